"""The README's curl flow, run exactly as written against a real server on the embedded default."""

import re
import subprocess

import pytest

from devstack import ROOT, flask_command, free_port, start_server

pytestmark = pytest.mark.integration


def readme_flow() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Try it with curl", 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def test_readme_curl_flow_works(tmp_path):
    env = {
        "CHAT_ENV": "development",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'readme.db'}",
        "WEB_APP_KEY_FILE": str(tmp_path / "web-app-key"),  # not the checkout's own file
        "ASSET_DIR": str(tmp_path / "assets"),
    }  # nor its instance/assets
    flask_command(env, "db", "upgrade")
    demo = flask_command(env, "demo")
    key = re.search(r"app key:\s+(\S+)", demo).group(1)
    port = free_port()
    env["PORT"] = str(port)  # the address `make run` serves, which file URLs start with by default
    server, base = start_server(env, tmp_path, port=port)
    try:
        script = readme_flow()
        script = re.sub(r"^KEY=.*$", f"KEY='{key}'", script, flags=re.M)
        script = re.sub(r"^B=.*$", f"B={base}", script, flags=re.M)
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
        )
        assert result.returncode == 0, result.stderr
        answers = result.stdout.strip().splitlines()
        assert len(answers) == 4, answers
        history, conversations, found, deleted = answers
        assert '"content":"hi bob"' in history and '"ispushed":1' in history
        assert '"type":-2' in history and f'"content":"{base}/files/' in history  # the uploaded photo
        assert '"username":"bob"' in conversations
        assert '"snippet":"hi bob","highlights":[[3,6]]' in found
        assert deleted == '{"code":0,"msg":"success","data":null}'
    finally:
        server.stop()
