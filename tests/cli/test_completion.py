"""Shell completion of the installed `chargepay` command (typer's, through click's protocol).

The shell calls the command back with ``_CHARGEPAY_COMPLETE`` set and the
words typed so far; these tests make that call the way the generated bash and
zsh scripts do, and check the script a user installs names the same variable.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CHARGEPAY = str(Path(sys.executable).with_name("chargepay"))


def complete(shell: str, words: str) -> list[str]:
    """What the command offers for ``words`` (a trailing space: a new, empty word)."""
    env = {**os.environ, "_CHARGEPAY_COMPLETE": f"complete_{shell}"}
    if shell == "bash":
        cword = len(words.split()) - (0 if words.endswith(" ") else 1)
        env |= {"COMP_WORDS": words, "COMP_CWORD": str(cword)}
    else:
        env |= {"_TYPER_COMPLETE_ARGS": words}
    result = subprocess.run(
        [CHARGEPAY], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_bash_completes_commands_and_subcommands() -> None:
    assert complete("bash", "chargepay sess") == ["sessions"]
    assert {"list", "show", "stop", "receipt", "export"} <= set(
        complete("bash", "chargepay sessions ")
    )


def test_zsh_completes_with_the_help_text() -> None:
    [line] = complete("zsh", "chargepay sessions l")
    assert '"list"' in line and "Sessions" in line


def test_the_installable_script_calls_the_command_back() -> None:
    # What `--install-completion` writes for bash (asked for by name: the shell that runs
    # the tests is not necessarily one typer can detect).
    result = subprocess.run(
        [CHARGEPAY],
        env={**os.environ, "_CHARGEPAY_COMPLETE": "source_bash"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert "_CHARGEPAY_COMPLETE=complete_bash" in result.stdout
    assert "complete -o default -F _chargepay_completion chargepay" in result.stdout
