"""``GET /files/<token>/<name>``: uploaded files, by URL alone.

No credential is read here, and none is needed: the URL's random token is the permission
(an ``<img src>``, a media player or a KOOK client fetches it as it is). Unknown tokens answer
404, deleted files 410, both in the classic envelope. The answer's headers and ranges are
``chat.assets.serving``'s.
"""

from __future__ import annotations

from flask import request
from marshmallow import fields

from chat.assets import service, serving
from chat.blueprint import Blueprint
from chat.schemas import BaseSchema

files_blp = Blueprint("files", __name__, url_prefix="/files", description="Uploaded files")


class FileQuerySchema(BaseSchema):
    thumb = fields.Boolean(
        load_default=False,
        metadata={
            "description": "1: the image's thumbnail (JPEG, at most 320 px on its longer side); 404 "
            "for other kinds"
        },
    )


_BINARY = {"schema": {"type": "string", "format": "binary"}}
_RESPONSES = {
    "200": {
        "description": "The file: images, video and audio inline with their own type; anything else "
        "as application/octet-stream with Content-Disposition: attachment",
        "content": {"*/*": _BINARY},
    },
    "206": {"description": "The byte range asked for (Range: bytes=a-b)", "content": {"*/*": _BINARY}},
    "304": {"description": "Not modified (If-None-Match matched the ETag)"},
}


@files_blp.route("/<token>/<name>", methods=["GET"])
@files_blp.arguments(FileQuerySchema, location="query")
@files_blp.doc(security=[], responses=_RESPONSES)
def get_file(args, token: str, name: str):
    """Fetch an uploaded file (or its thumbnail) by its URL; answers ranges."""
    stored = service.find_for_serving(token)
    return serving.respond(
        stored,
        thumbnail=args["thumb"],
        head_only=request.method == "HEAD",
        range_value=request.headers.get("Range"),
        if_none_match=request.headers.get("If-None-Match"),
        if_range=request.headers.get("If-Range"),
    )
