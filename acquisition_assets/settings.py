"""Pipeline settings: the run's tuning switches, editable in the Dagster launchpad."""

import dagster as dg
from pydantic import Field


class PipelineSettings(dg.ConfigurableResource):
    """Switches and limits shared by every asset of a run."""

    enable_caching: bool = Field(
        default=True, description="Serve repeated database reads from the TTL query cache."
    )
    enable_circuit_breaker: bool = Field(
        default=True,
        description="Stop calling an API after repeated failures and probe it after a timeout.",
    )
    enable_batch_processing: bool = Field(
        default=True,
        description="Send API batches from a thread pool; off sends them one after another.",
    )
    batch_size: int = Field(
        default=50,
        ge=1,
        description=(
            "Records per API call (messages per email batch, capped at 500; contacts per CRM "
            "upsert, capped at 100)."
        ),
    )
    max_workers: int = Field(
        default=4, ge=1, le=64, description="Threads sending API batches in parallel (threads)."
    )
    enable_ml_scoring: bool = Field(
        default=True,
        description="Score with the trained model when one exists; off uses transparent points.",
    )
    enable_multichannel: bool = Field(
        default=False,
        description=("Also queue a sales call task for hot leads who accept calls but not email."),
    )
    max_leads_per_run: int = Field(
        default=10_000,
        ge=1,
        description=(
            "Maximum leads each step takes on per run (leads); the rest stays pending for the "
            "next run."
        ),
    )
    fail_on_open_circuit: bool = Field(
        default=False,
        description=(
            "Fail the step when a circuit breaker is open; off leaves the work pending and "
            "reports it as deferred."
        ),
    )

    def worker_count(self) -> int:
        """Return how many threads send API batches: 1 when batch processing is off."""
        return self.max_workers if self.enable_batch_processing else 1
