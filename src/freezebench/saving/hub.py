"""Push a saved model's folder to the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

from freezebench.config import RunConfig
from freezebench.errors import HubError
from freezebench.record import safe_name


def hub_repo(config: RunConfig, run_id: str) -> str:
    """The repository ``--push-to-hub`` pushes to: ``--hub-model-id``, else the run id (under
    the account the token belongs to)."""
    return config.hub_model_id or safe_name(run_id, 96)


def push_folder(folder: Path, repo_id: str) -> str:
    """Upload ``folder`` to the model repository ``repo_id`` (created if missing, with the
    account's default visibility); return the repository's URL."""
    api = HfApi()
    try:
        repo = api.create_repo(repo_id, exist_ok=True)
        api.upload_folder(repo_id=repo.repo_id, folder_path=folder,
                          commit_message=f"freezebench run {folder.name}")
    # The Hub client raises its HTTP library's own errors for a network that is down, and that
    # library has changed between versions (requests, httpx): every failure here is reported
    # the same way, with what it said, and the local folder stays as it is.
    except Exception as exc:  # noqa: BLE001
        raise HubError(_failure(folder, repo_id, exc)) from None
    return str(repo)


def _failure(folder: Path, repo_id: str, exc: Exception) -> str:
    said = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else \
        type(exc).__name__
    if isinstance(exc, OfflineModeIsEnabled):
        reason, fix = ("HF_HUB_OFFLINE=1 is set, so nothing can reach the Hub",
                       "unset HF_HUB_OFFLINE where the Hub is reachable")
    elif isinstance(exc, LocalTokenNotFoundError) or (
            isinstance(exc, HfHubHTTPError) and exc.response is not None
            and exc.response.status_code in (401, 403)):
        reason, fix = (f"the Hub refused the request ({said})",
                       "log in with `hf auth login` (or set HF_TOKEN) with write access to that "
                       "namespace")
    else:
        reason, fix = said, "check the network connection and the repository name"
    return (f"Could not push '{folder}' to the Hub repository '{repo_id}': {reason}. The model "
            f"and the run's record are saved locally. To push them: {fix}, then run "
            f"`hf upload {repo_id} {folder}`.")
