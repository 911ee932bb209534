"""The README's Quick start commands: the install line works as root (no sudo in containers) and as a
user, updates the package lists first, and CI runs the README's test command verbatim."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _quick_start_commands() -> list:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_install_command_updates_first_and_needs_no_sudo_as_root():
    install = _quick_start_commands()[0]
    assert "sudo apt-get" not in install  # a literal sudo fails where there is none (root in containers)
    assert install.index("apt-get update") < install.index("apt-get install")
    assert "python3-venv" in install and "libusb-1.0-0" in install  # venv and open3d's system library
    prefix = install.split(";", 1)[0]  # SUDO=...: evaluated with `id -u` answering as root, then as a user
    for uid, expected in (("0", ""), ("1000", "sudo")):
        shell = f'id() {{ echo {uid}; }}; {prefix}; printf "%s" "$SUDO"'
        assert subprocess.run(["bash", "-c", shell], capture_output=True, text=True, check=True).stdout == expected


def test_ci_runs_the_readme_test_command_verbatim():
    test_command = _quick_start_commands()[1]
    assert "python -m pytest" in test_command
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in lines
