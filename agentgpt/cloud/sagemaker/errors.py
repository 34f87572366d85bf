"""AWS errors as messages a user can act on."""

from __future__ import annotations

from typing import Any

__all__ = ["SageMakerError", "TrainingJobFailed", "explain"]


class SageMakerError(RuntimeError):
    """A SageMaker call failed; the message says why and what to check."""


class TrainingJobFailed(SageMakerError):
    """A training job ended ``Failed`` (or ``Stopped`` when waiting for completion);
    ``reason`` is SageMaker's ``FailureReason`` (the container's failure file)."""

    def __init__(self, job_name: str, status: str, reason: str | None) -> None:
        self.job_name = job_name
        self.status = status
        self.reason = reason
        text = f"training job {job_name} {status.lower()}"
        super().__init__(f"{text}: {reason}" if reason else text)


def explain(exc: Exception, action: str, role_arn: str | None = None) -> SageMakerError:
    """A :class:`SageMakerError` for a botocore error raised while doing ``action``."""
    response: dict[str, Any] = getattr(exc, "response", None) or {}
    error = response.get("Error", {})
    code = str(error.get("Code", ""))
    message = str(error.get("Message", "")) or str(exc)
    lowered = message.lower()
    if code in ("AccessDeniedException", "AccessDenied", "UnauthorizedOperation"):
        return SageMakerError(
            f"{action}: access denied ({message}). The AWS identity in use lacks a permission;"
            " docs/cloud.md lists the minimal IAM policy"
        )
    if code in ("ValidationException", "ValidationError") and "role" in lowered:
        role = f" {role_arn}" if role_arn else ""
        return SageMakerError(
            f"{action}: SageMaker cannot use the role{role} ({message}). Check that the role"
            " exists, trusts sagemaker.amazonaws.com, and that you may pass it (iam:PassRole)"
        )
    if code in ("ResourceLimitExceeded", "LimitExceededException", "ThrottlingException"):
        return SageMakerError(
            f"{action}: an AWS resource limit was reached ({message}). Request a quota"
            " increase (Service Quotas, SageMaker) or use another instance type"
        )
    if code == "ResourceInUse":
        return SageMakerError(f"{action}: the name is already in use ({message})")
    if code in ("ResourceNotFound", "ValidationException") and (
        "not found" in lowered or "could not find" in lowered or "does not exist" in lowered
    ):
        return SageMakerError(f"{action}: not found ({message})")
    if code in ("UnrecognizedClientException", "InvalidClientTokenId", "ExpiredTokenException"):
        return SageMakerError(f"{action}: the AWS credentials are not valid ({message})")
    return SageMakerError(f"{action}: {code or type(exc).__name__}: {message}")
