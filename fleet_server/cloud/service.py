"""The agent's inference service with the fleet's models loaded on demand."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from starlette.concurrency import run_in_threadpool

from agent.serving.scheduler import SchedulerSettings
from agent.serving.service import InferenceService, InferResult, ModelInfo
from fleet_server.cloud.models import CloudModels

CLOUD_SERVER_NAME = "edgefleet-cloud"


class CloudInferenceService(InferenceService):
    """Ready whenever the server is up: every pushed model version can be served."""

    def __init__(self, models: CloudModels, scheduling: SchedulerSettings | None = None) -> None:
        # Batches pay on a GPU: the policy measures and takes them where they do.
        super().__init__(
            models.registry, scheduling=scheduling or SchedulerSettings(max_batch=32), name=CLOUD_SERVER_NAME
        )
        self.models = models

    def ready(self) -> bool:
        return True

    def model_info(self, name: str, version: str | None = None) -> ModelInfo:
        version = self.models.ensure(name, version)
        return super().model_info(name, version)

    async def infer(
        self,
        name: str,
        version: str | None,
        inputs: dict[str, np.ndarray],
        outputs: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> InferResult:
        version = await run_in_threadpool(self.models.ensure, name, version)
        return await super().infer(name, version, inputs, outputs, timeout)
