"""Device identity: the fleet CA, enrollment tokens and enrollment, renewal, revocation, the
broker's TLS and ACL files, and the mTLS device listener.

Public names: :class:`~fleet_server.identity.ca.FleetCA`, :data:`~fleet_server.identity.ca.SERVER_CN`,
:class:`~fleet_server.identity.service.Identity` (what :class:`~fleet_server.fleet.Fleet` holds),
:func:`~fleet_server.identity.broker_files.acl_text`.
"""

from fleet_server.identity.broker_files import TlsFiles, acl_text
from fleet_server.identity.ca import SERVER_CN, FleetCA

__all__ = ["SERVER_CN", "FleetCA", "TlsFiles", "acl_text"]
