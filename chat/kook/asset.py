"""KOOK ``/api/v3/asset/create``: upload a file, get its URL (what khl.py's
``client.create_asset`` and other KOOK SDKs call before sending an image or file)."""

from __future__ import annotations

from chat.assets import service as assets
from chat.auth import TOKEN_SECURITY, current_user, require_token
from chat.blueprint import Blueprint
from chat.dialects import KOOK_API
from chat.endpoints import takes_upload
from chat.kook import schemas as s

asset_blp = Blueprint("kook_asset", __name__, url_prefix=f"{KOOK_API}/asset", description="KOOK uploads")


@takes_upload
@asset_blp.operation(
    "/create",
    "POST",
    s.AssetCreatedEnvelope,
    auth=require_token,
    security=TOKEN_SECURITY,
    args=s.AssetCreateSchema,
    location="files",
)
def create_asset(args):
    """Upload a file (multipart field ``file``); answers its URL."""
    upload = args["file"]
    return {"data": assets.store_upload(current_user().id, upload.stream, upload.filename)}
