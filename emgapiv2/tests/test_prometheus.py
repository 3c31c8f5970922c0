"""deployment/prometheus/: the scrape config and the alert rules are valid for Prometheus (promtool,
from Debian's `prometheus` package, which scripts/bootstrap.sh installs), the worker-down alert fires
(`promtool test rules`), and every metric the rules name is one the platform exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from calculations.metrics import exposition
from emgapiv2.config import BASE_DIR

PROMETHEUS_DIR = BASE_DIR / "deployment" / "prometheus"
TOKEN_FILE = "/etc/prometheus/emgapi-metrics-token"


def promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> str:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is missing: scripts/bootstrap.sh installs Debian's prometheus package")
    result = subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_scrape_config_and_its_rule_files_are_valid(tmp_path: Path) -> None:
    promtool("check", "config", "--syntax-only", "prometheus.yml")
    # the whole check reads the token's file too: the same config, with a token file that exists
    token = tmp_path / "token"
    token.write_text("a-token")
    config = (PROMETHEUS_DIR / "prometheus.yml").read_text()
    assert config.count(f"credentials_file: {TOKEN_FILE}") == 2  # both jobs send the token
    (tmp_path / "prometheus.yml").write_text(config.replace(TOKEN_FILE, str(token)))
    shutil.copy(PROMETHEUS_DIR / "alerts.yml", tmp_path)
    assert "SUCCESS: 10 rules found" in promtool("check", "config", "prometheus.yml", cwd=tmp_path)


def test_the_alert_rules_are_valid() -> None:
    promtool("check", "rules", "alerts.yml")


def test_the_worker_down_alert_fires_after_a_minute_without_an_answer() -> None:
    assert "SUCCESS" in promtool("test", "rules", "alerts.test.yml")


@pytest.mark.django_db
def test_every_metric_the_rules_name_is_exported() -> None:
    rules = (PROMETHEUS_DIR / "alerts.yml").read_text()
    named = {re.sub(r"_(count|bucket|sum)$", "", name) for name in re.findall(r"\bemgapi_\w+", rules)}
    exported = set(re.findall(r"^# TYPE (\w+)", exposition(with_database=True).decode(), re.MULTILINE))
    assert named and named <= exported, named - exported
