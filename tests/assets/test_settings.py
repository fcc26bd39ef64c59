"""Upload settings are checked at start-up, and the routes are in the OpenAPI document."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from config import ConfigError, load_config

S3 = {
    "S3_ENDPOINT_URL": "http://127.0.0.1:9000",
    "S3_BUCKET": "chat",
    "S3_ACCESS_KEY_ID": "id",
    "S3_SECRET_ACCESS_KEY": "secret",
}


def test_half_configured_object_storage_stops_start_up_naming_what_is_missing():
    with pytest.raises(ConfigError) as refused:
        load_config({"S3_ENDPOINT_URL": "http://127.0.0.1:9000", "S3_BUCKET": "chat"})
    assert "S3_ACCESS_KEY_ID" in str(refused.value) and "S3_SECRET_ACCESS_KEY" in str(refused.value)
    assert load_config(S3)["S3_BUCKET"] == "chat"
    assert load_config({})["S3_BUCKET"] is None  # none of them: local disk
    with pytest.raises(ConfigError, match="S3_ENDPOINT_URL"):
        load_config({**S3, "S3_ENDPOINT_URL": "ftp://store"})


def test_public_base_url_defaults_to_the_served_address_and_is_checked():
    assert load_config({})["PUBLIC_BASE_URL"] == "http://127.0.0.1:5000"
    assert load_config({"PORT": "8000"})["PUBLIC_BASE_URL"] == "http://127.0.0.1:8000"
    assert (
        load_config({"PUBLIC_BASE_URL": "https://chat.example.com/"})["PUBLIC_BASE_URL"]
        == "https://chat.example.com"
    )
    with pytest.raises(ConfigError, match="PUBLIC_BASE_URL"):
        load_config({"PUBLIC_BASE_URL": "chat.example.com"})


def test_limits_must_be_positive():
    with pytest.raises(ConfigError, match="ASSET_MAX_IMAGE_BYTES"):
        load_config({"ASSET_MAX_IMAGE_BYTES": "0"})


def test_the_upload_routes_and_files_are_documented(client):
    spec = client.get("/openapi.json").json
    for path in ("/asset", "/api/v3/asset/create"):
        operation = spec["paths"][path]["post"]
        body = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
        assert {"400", "401", "413", "429"} <= set(operation["responses"]), path
        assert body
    files = spec["paths"]["/files/{token}/{name}"]["get"]
    assert {"200", "206", "304", "404", "410", "416"} <= set(files["responses"])
    assert files.get("security") == []


def test_flask_assets_sweep_says_what_it_did(app):
    result = CliRunner().invoke(app.cli, ["assets", "sweep"])
    assert result.exit_code == 0, result.output
    assert "0 uploads no message uses deleted" in result.output


def test_the_upload_routes_body_cap_follows_the_largest_kind():
    settings = load_config(
        {
            "ASSET_MAX_VIDEO_BYTES": "1000",
            "ASSET_MAX_FILE_BYTES": "3000",
            "ASSET_MAX_IMAGE_BYTES": "2000",
            "ASSET_MAX_AUDIO_BYTES": "10",
        }
    )
    assert settings["ASSET_MAX_REQUEST_BYTES"] == 3000 + 64 * 1024
