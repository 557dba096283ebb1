"""Table definitions of the acquisition database, the source for queries and migrations."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")
Timestamp = DateTime(timezone=True)


def _id() -> Column:
    return Column("id", Id, primary_key=True, autoincrement=True)


lead_intake = Table(
    "lead_intake",
    metadata,
    _id(),
    Column("intake_key", String(64), nullable=False, unique=True),
    Column("content_hash", String(64), nullable=False),
    Column("source", String(64), nullable=False),
    Column("source_file", String(255)),
    Column("source_row", Integer),
    Column("external_id", String(128)),
    Column("email", String(320)),
    Column("first_name", String(128)),
    Column("last_name", String(128)),
    Column("lead_source", String(128)),
    Column("lead_origin", String(128)),
    Column("email_opt_in", Boolean),
    Column("call_opt_in", Boolean),
    Column("converted", Boolean),
    Column("total_visits", Integer),
    Column("time_on_site_seconds", Integer),
    Column("page_views_per_visit", Float),
    Column("last_activity", String(128)),
    Column("country", String(128)),
    Column("city", String(128)),
    Column("occupation", String(128)),
    Column("specialization", String(128)),
    Column("tags", String(255)),
    Column("lead_quality", String(64)),
    Column("referral_code", String(64)),
    Column("attributes", Text, nullable=False, server_default="{}"),
    Column("received_at", Timestamp, nullable=False),
)

lead_rejections = Table(
    "lead_rejections",
    metadata,
    _id(),
    Column("rejection_key", String(64), nullable=False, unique=True),
    Column("stage", String(32), nullable=False),
    Column("intake_id", Id, ForeignKey("lead_intake.id")),
    Column("source_file", String(255)),
    Column("source_row", Integer),
    Column("external_id", String(128)),
    Column("email", String(320)),
    Column("reason_code", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("raw", Text, nullable=False, server_default="{}"),
    Column("rejected_at", Timestamp, nullable=False),
)

leads = Table(
    "leads",
    metadata,
    _id(),
    Column("intake_id", Id, ForeignKey("lead_intake.id"), nullable=False, unique=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("email_domain", String(255), nullable=False),
    Column("first_name", String(128)),
    Column("last_name", String(128)),
    Column("source", String(64), nullable=False),
    Column("lead_source", String(128)),
    Column("lead_origin", String(128)),
    Column("email_opt_in", Boolean, nullable=False),
    Column("call_opt_in", Boolean, nullable=False),
    Column("converted", Boolean),
    Column("total_visits", Integer),
    Column("time_on_site_seconds", Integer),
    Column("page_views_per_visit", Float),
    Column("last_activity", String(128)),
    Column("country", String(128)),
    Column("occupation", String(128)),
    Column("lead_quality", String(64)),
    Column("score", Float),
    Column("score_method", String(16)),
    Column("model_version", String(64)),
    Column("score_reasons", Text),
    Column("scored_at", Timestamp),
    Column("segment", String(16)),
    Column("lifecycle_stage", String(32)),
    Column("segment_reason", Text),
    Column("segmented_at", Timestamp),
    Column("email_status", String(16), nullable=False, server_default="active"),
    Column("suppression_reason", Text),
    Column("engagement_score", Integer, nullable=False, server_default="0"),
    Column("last_engaged_at", Timestamp),
    Column("referral_code", String(32), unique=True),
    Column("referred_by_lead_id", Id, ForeignKey("leads.id")),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)
Index("ix_leads_scored_at", leads.c.scored_at)
Index("ix_leads_segment", leads.c.segment)

lead_scoring_models = Table(
    "lead_scoring_models",
    metadata,
    _id(),
    Column("version", String(64), nullable=False, unique=True),
    Column("training_key", String(64), nullable=False),
    Column("trained_at", Timestamp, nullable=False),
    Column("training_rows", Integer, nullable=False),
    Column("positive_rows", Integer, nullable=False),
    Column("coefficients", Text, nullable=False),
    Column("intercept", Float, nullable=False),
    Column("evaluation", Text, nullable=False),
)

nurture_enrollments = Table(
    "nurture_enrollments",
    metadata,
    _id(),
    Column("lead_id", Id, ForeignKey("leads.id"), nullable=False, unique=True),
    Column("sequence", String(32), nullable=False),
    Column("next_step", Integer, nullable=False, server_default="0"),
    Column("status", String(16), nullable=False),
    Column("stop_reason", Text),
    Column("enrolled_at", Timestamp, nullable=False),
    Column("next_due_at", Timestamp),
    Column("updated_at", Timestamp, nullable=False),
)
Index("ix_nurture_enrollments_due", nurture_enrollments.c.status, nurture_enrollments.c.next_due_at)

email_sends = Table(
    "email_sends",
    metadata,
    _id(),
    Column("idempotency_key", String(128), nullable=False, unique=True),
    Column("lead_id", Id, ForeignKey("leads.id"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("sequence", String(32)),
    Column("step", Integer),
    Column("to_address", String(320), nullable=False),
    Column("subject", Text, nullable=False),
    Column("text_body", Text, nullable=False),
    Column("tag", String(64), nullable=False),
    Column("metadata_json", Text, nullable=False, server_default="{}"),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("provider_message_id", String(64)),
    Column("error_code", Integer),
    Column("last_error", Text),
    Column("claimed_by", String(64)),
    Column("claimed_at", Timestamp),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("sent_at", Timestamp),
)
Index("ix_email_sends_status", email_sends.c.status)
Index("ix_email_sends_message", email_sends.c.provider_message_id)

email_events = Table(
    "email_events",
    metadata,
    _id(),
    Column("provider_event_id", String(64), nullable=False, unique=True),
    Column("provider_message_id", String(64)),
    Column("send_id", Id, ForeignKey("email_sends.id")),
    Column("lead_id", Id, ForeignKey("leads.id")),
    Column("event_type", String(16), nullable=False),
    Column("occurred_at", Timestamp),
    Column("payload", Text, nullable=False),
    Column("received_at", Timestamp, nullable=False),
)
Index("ix_email_events_lead", email_events.c.lead_id, email_events.c.event_type)

referral_invites = Table(
    "referral_invites",
    metadata,
    _id(),
    Column("lead_id", Id, ForeignKey("leads.id"), nullable=False, unique=True),
    Column("referral_code", String(32), nullable=False, unique=True),
    Column("send_key", String(128), nullable=False),
    Column("invited_at", Timestamp, nullable=False),
)

referrals = Table(
    "referrals",
    metadata,
    _id(),
    Column("submission_key", String(64), nullable=False, unique=True),
    Column("referral_code", String(64)),
    Column("referrer_lead_id", Id, ForeignKey("leads.id")),
    Column("referred_email", String(320)),
    Column("referred_intake_id", Id, ForeignKey("lead_intake.id")),
    Column("status", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("reward_points", Integer, nullable=False, server_default="0"),
    Column("submitted_at", Timestamp),
    Column("processed_at", Timestamp, nullable=False),
)

crm_sync_state = Table(
    "crm_sync_state",
    metadata,
    Column("lead_id", Id, ForeignKey("leads.id"), primary_key=True, autoincrement=False),
    Column("contact_hash", String(64)),
    Column("crm_id", String(64)),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("synced_at", Timestamp),
    Column("updated_at", Timestamp, nullable=False),
)

call_tasks = Table(
    "call_tasks",
    metadata,
    _id(),
    Column("lead_id", Id, ForeignKey("leads.id"), nullable=False, unique=True),
    Column("reason", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", Timestamp, nullable=False),
)

circuit_breakers = Table(
    "circuit_breakers",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("failure_count", Integer, nullable=False, server_default="0"),
    Column("opened_at", Float),
    Column("probe_started_at", Float),
    Column("last_error", Text),
    Column("updated_at", Float, nullable=False),
)

circuit_breaker_transitions = Table(
    "circuit_breaker_transitions",
    metadata,
    _id(),
    Column("name", String(64), nullable=False),
    Column("from_state", String(16), nullable=False),
    Column("to_state", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", Float, nullable=False),
)

pipeline_watermarks = Table(
    "pipeline_watermarks",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(255), nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

step_metrics = Table(
    "step_metrics",
    metadata,
    _id(),
    Column("run_id", String(64), nullable=False),
    Column("asset_key", String(128), nullable=False),
    Column("started_at", Timestamp, nullable=False),
    Column("duration_seconds", Float, nullable=False),
    Column("rows_processed", Integer, nullable=False),
    Column("figures", Text, nullable=False),
)
Index("ix_step_metrics_run", step_metrics.c.run_id)

acquisition_reports = Table(
    "acquisition_reports",
    metadata,
    _id(),
    Column("run_id", String(64), nullable=False),
    Column("generated_at", Timestamp, nullable=False),
    Column("funnel", Text, nullable=False),
    Column("markdown", Text, nullable=False),
)

performance_reports = Table(
    "performance_reports",
    metadata,
    _id(),
    Column("run_id", String(64), nullable=False),
    Column("generated_at", Timestamp, nullable=False),
    Column("figures", Text, nullable=False),
)
