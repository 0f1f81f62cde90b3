"""The agent's side of the trust chain: python-tuf's ngclient with the agent's resumable fetcher
plugged in (:mod:`.fetcher`), the bundle source that uses it (:mod:`.source`), the trusted clock
(:mod:`.clock`) and the translation of python-tuf's errors (:mod:`.errors`)."""

from agent.trust.clock import TrustedClock
from agent.trust.fetcher import ResumableFetcher
from agent.trust.source import TufSource, install_root, trust_dir, write_root

__all__ = ["ResumableFetcher", "TrustedClock", "TufSource", "install_root", "trust_dir", "write_root"]
