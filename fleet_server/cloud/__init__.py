"""The cloud inference endpoint: the fleet's models served over the Open Inference Protocol v2,
where devices offload the requests they can't serve within their latency budget.

- :class:`CloudModels`: loads a model version's source ONNX from the artifact store on first use
  (ONNX Runtime, CUDA execution provider where present, else CPU), keeps the few most recent.
- :class:`CloudInferenceService`: the agent's own transport-neutral service over them, so the
  endpoint answers exactly as a device does (same checks, errors, batching).
"""

from fleet_server.cloud.models import CloudModels
from fleet_server.cloud.service import CloudInferenceService

__all__ = ["CloudInferenceService", "CloudModels"]
