"""Create buckets and bind their object events to MinIO's webhook target, keeping other rules."""

from __future__ import annotations

from dataclasses import dataclass, replace

from minio import Minio
from minio.error import MinioException, S3Error
from minio.notificationconfig import NotificationConfig, QueueConfig
from urllib3.exceptions import HTTPError as Urllib3Error

from .errors import PermanentError, TransientError

CONFIG_ID = "sharepoint-proxy"  # the Id of our QueueConfiguration: how a re-run finds its own rule
EVENTS = ("s3:ObjectCreated:*", "s3:ObjectRemoved:*")
# MinIO answers a binding to a target it does not have with this code (ErrARNNotification).
TARGET_MISSING_CODE = "InvalidArgument"


def webhook_arn(target_id: str) -> str:
    """Return the ARN of MinIO's webhook target `target_id` (the suffix of its variables)."""
    return f"arn:minio:sqs::{target_id}:webhook"


@dataclass(frozen=True)
class Binding:
    """What binding one bucket did: created it, changed its rules, how many other rules it kept."""

    bucket: str
    created: bool
    changed: bool
    kept: int


def with_binding(current: NotificationConfig, *, arn: str, config_id: str = CONFIG_ID) -> NotificationConfig:
    """Return `current` with our queue rule (whole bucket, EVENTS, to `arn`) and every other rule kept.

    Our rule is the one with our id or our ARN; all of them are replaced by exactly one.
    """
    others = [q for q in current.queue_config_list if not _is_ours(q, arn=arn, config_id=config_id)]
    ours = QueueConfig(queue=arn, events=list(EVENTS), config_id=config_id)
    return replace(current, queue_config_list=[*others, ours])


def is_bound(current: NotificationConfig, *, arn: str, config_id: str = CONFIG_ID) -> bool:
    """Tell whether `current` already holds exactly our rule, unfiltered, for EVENTS."""
    ours = [q for q in current.queue_config_list if _is_ours(q, arn=arn, config_id=config_id)]
    if len(ours) != 1:
        return False
    [rule] = ours
    return (
        rule.queue == arn
        and set(rule.events) == set(EVENTS)
        and rule.prefix_filter_rule is None
        and rule.suffix_filter_rule is None
    )


def bind_bucket(client: Minio, bucket: str, *, arn: str, config_id: str = CONFIG_ID) -> Binding:
    """Create `bucket` if missing and bind its object events to `arn`; write only if that changes.

    Raise PermanentError("webhook_target_missing") when the server refuses the ARN (MinIO:
    no target with that id is configured), PermanentError("minio_refused") for any other
    refusal, TransientError when the server cannot be reached.
    """
    try:
        created = False
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)
            created = True
        current = client.get_bucket_notification(bucket)
        kept = sum(1 for q in current.queue_config_list if not _is_ours(q, arn=arn, config_id=config_id))
        kept += len(current.cloud_func_config_list) + len(current.topic_config_list)
        if is_bound(current, arn=arn, config_id=config_id):
            return Binding(bucket, created=created, changed=False, kept=kept)
        try:
            client.set_bucket_notification(bucket, with_binding(current, arn=arn, config_id=config_id))
        except S3Error as exc:
            if exc.code == TARGET_MISSING_CODE:
                raise PermanentError(
                    "webhook_target_missing", f"the server refused {arn} for bucket {bucket}: {exc.code}"
                ) from exc
            raise
    except S3Error as exc:
        message = f"MinIO refused bucket {bucket}: {exc.code} {exc.message}"
        raise PermanentError("minio_refused", message) from exc
    except (MinioException, Urllib3Error, OSError) as exc:
        raise TransientError(f"MinIO unreachable: {type(exc).__name__}") from exc
    return Binding(bucket, created=created, changed=True, kept=kept)


def _is_ours(rule: QueueConfig, *, arn: str, config_id: str) -> bool:
    return rule.queue == arn or rule.config_id == config_id
