"""What the README tells a new user to type works as written, and what it says about the order
saga agrees with the saga's definition."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

from django.conf import settings

from orders.saga import order_saga
from sagas.config import saga_config
from sagas.core.definition import StepKind

BASE = Path(settings.BASE_DIR)
README = (BASE / "README.md").read_text()


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.MULTILINE | re.DOTALL)
    assert match, f"no section {title!r} in the README"
    return match.group(1)


def test_the_curl_example_makes_its_idempotency_key_with_python3_alone(tmp_path: Path) -> None:
    # A fresh Debian has no uuidgen: an empty key would be dropped silently by the server.
    match = re.search(r'"Idempotency-Key: \$\((.*)\)"', README)
    assert match, "the README's order example sends no generated Idempotency-Key"
    tools = tmp_path / "bin"  # a PATH with nothing but a python3
    tools.mkdir()
    (tools / "python3").symlink_to(sys.executable)

    made = subprocess.run(
        ["/bin/sh", "-c", match.group(1)],
        env={"PATH": str(tools)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert made.returncode == 0, made.stderr
    assert uuid.UUID(made.stdout.strip())


def test_the_readme_names_the_pivot_as_the_step_that_refuses_antarctica() -> None:
    steps = {step.name: step for step in order_saga(saga_config()).steps}
    assert steps["schedule_shipment"].kind is StepKind.PIVOT
    assert steps["schedule_shipment"].action == "shipping.schedule"  # refuses AQ

    said = re.search(r"Country `AQ` is not served \((.*?)\)\.", README, re.DOTALL)

    assert said, "the README no longer explains country AQ"
    explanation = " ".join(said.group(1).split())
    assert "pivot, `schedule_shipment`, is refused" in explanation
    assert "before the pivot fails" not in README


def test_the_operator_commands_use_the_virtualenv_make_run_creates() -> None:
    block = re.search(r"```sh\n(.*?)```", section("Operating it"), re.DOTALL)
    assert block
    commands = [line for line in block.group(1).splitlines() if line.strip()]

    assert commands
    assert all(line.startswith(".venv/bin/python manage.py ") for line in commands), commands


def test_the_env_example_lists_every_variable_of_the_configuration_table() -> None:
    first_cells = re.findall(r"^\| (`[^|]+) \|", section("Configuration"), re.MULTILINE)
    documented = {name for cell in first_cells for name in re.findall(r"`([A-Z_]+)`", cell)}
    example = (BASE / ".env.example").read_text()

    assert {"SECRET_KEY", "PORT", "HOST", "DEMO_USER_PASSWORD"} <= documented
    missing = sorted(name for name in documented if not re.search(rf"\b{name}=", example))
    assert missing == []
