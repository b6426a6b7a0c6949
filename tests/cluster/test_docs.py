"""docs/cluster.md's load balancer configuration is one HAProxy accepts (issue 11 item 6).

`haproxy -c` checks it where HAProxy is installed; everywhere, a structural
check: every frontend has a backend, every backend's servers are health-checked
on /healthz, and upgraded WebSockets get a tunnel timeout.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

DOC = Path(__file__).parents[2] / "docs" / "cluster.md"


def _config() -> str:
    blocks = re.findall(r"```haproxy\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1, "docs/cluster.md has one haproxy block"
    return str(blocks[0])


def _sections(config: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = ""
    for raw in config.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not line.startswith((" ", "\t")):
            current = line.strip()
            sections[current] = []
        else:
            assert current, f"a setting outside any section: {line!r}"
            sections[current].append(line.strip())
    return sections


def test_the_haproxy_example_routes_websockets_to_health_checked_nodes() -> None:
    sections = _sections(_config())
    backends = {
        name.split()[1]: body for name, body in sections.items() if name.startswith("backend ")
    }
    frontends = {n: b for n, b in sections.items() if n.startswith("frontend ")}
    assert {"global", "defaults"} <= set(sections)
    assert len(frontends) == 2 and len(backends) == 2
    for body in frontends.values():
        assert any(line.startswith("bind ") for line in body)
        (default,) = [line.split()[1] for line in body if line.startswith("default_backend ")]
        assert default in backends
    for body in backends.values():
        assert "option httpchk GET /healthz" in body
        servers = [line.split() for line in body if line.startswith("server ")]
        assert len(servers) >= 2 and all("check" in server for server in servers)
    assert any(line.startswith("timeout tunnel ") for line in sections["defaults"])


def test_haproxy_accepts_the_example_where_it_is_installed(tmp_path: Path) -> None:
    assert _sections(_config())  # parsed, at least (above)
    haproxy = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if haproxy is None:
        return  # not installed (apt-get install haproxy): the structural test stands for it
    path = tmp_path / "haproxy.cfg"
    path.write_text(_config())
    result = subprocess.run(
        [haproxy, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
