from pathlib import Path

from builders import REPO


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text().splitlines()
    start = readme.index("```bash")
    commands = readme[start + 1 : start + 3]
    assert "pytest" in commands[1] and "fastdaf" in commands[0]
    ci_lines = [
        line
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line and not line.startswith(("#", "set ", "cd ", "echo "))
    ]
    assert ci_lines[0] == commands[1]  # first the README's command; then the newest-torch lane
    assert all("PIP_CONSTRAINT=requirements/test.lock" in command for command in commands)
    assert any("PIP_CONSTRAINT=requirements/latest.lock" in line for line in ci_lines[1:])


def test_readme_layout_names_paths_that_exist():
    """The README's layout table is how a newcomer finds a concept: every path it names must be there."""
    import re

    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("## Layout") : readme.index("## Predict")]
    rows = [row.split("|")[1] for row in table.splitlines() if row.startswith("| `")]
    named = {p for row in rows for p in re.findall(r"`([\w./]+)`", row)}
    assert len(named) >= 15
    missing = sorted(p for p in named if not (REPO / p).exists())
    assert not missing, f"README layout names missing paths: {missing}"
    package = {str(p.relative_to(REPO)) for p in (REPO / "fastdaf").iterdir() if p.suffix == ".py" or p.is_dir()}
    package -= {"fastdaf/__init__.py", "fastdaf/_checkout.py", "fastdaf/__pycache__"}
    unlisted = sorted(p for p in package if p not in named and p + "/" not in named)
    assert not unlisted, f"fastdaf modules the README layout does not place: {unlisted}"


def test_kernels_folder_is_installed_as_fastdaf_kernels():
    import fastdaf.kernels

    assert fastdaf.kernels.__path__ == [str(REPO / "kernels")]
    assert not (REPO / "kernels" / "__init__.py").exists()  # it would shadow Hugging Face's `kernels` (test_checkout)


def test_code_passes_ruff():
    """The lint configured in pyproject.toml ([tool.ruff]) holds for the whole tree; .ci/run runs it as a test."""
    import shutil
    import subprocess
    import sys

    ruff = Path(sys.executable).with_name("ruff")
    ruff = str(ruff) if ruff.exists() else shutil.which("ruff")
    assert ruff, "ruff is not installed: pip install -e '.[test]'"
    done = subprocess.run([ruff, "check", "--no-cache", str(REPO)], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def _card_section(readme: str) -> str:
    return readme[readme.index("## The bundled model") : readme.index("## Train, evaluate, ablate")]


def _table_row(section: str, name: str) -> list[float]:
    line = next(row for row in section.splitlines() if row.startswith(f"| {name} |"))
    return [float(c) for c in [c.strip() for c in line.strip("|").split("|")][1:]]


def test_model_card_in_readme_matches_the_bundled_config():
    """The README's model card shows what config.json records, each figure beside the command that makes it."""
    import json

    card = json.loads((REPO / "fastdaf" / "default_model" / "config.json").read_text())["extra"]["model_card"]
    evaluation = card["evaluation"]
    section = _card_section((REPO / "README.md").read_text())
    assert "CC BY-NC-SA 4.0" in section.split("\n\n")[1], "the licence is said first"
    for command in evaluation["commands"].values():
        assert f"`{command}`" in section or f"\n{command}\n" in section, command
    held_out = evaluation["held-out actors 16-18"]
    keys = ["balanced_acc", "macro_F1", "acc_3", "Corr", "MAE"]
    assert _table_row(section, "actors 16-18 (held out)") == [held_out["emotions"][k] for k in keys]
    for emotion, e in held_out["emotions"]["per_emotion"].items():
        assert _table_row(section, emotion) == [e["rows"], e["mean_score"], e["mean_audio_weight"]], emotion
    assert held_out["controls"]["audio"]["informative"] is True
    keys = ["MAE", "Corr", "Non0_acc_2", "Non0_F1_score", "Has0_acc_2", "Mult_acc_7"]
    for name in ("MOSEI valid, text only", "MOSEI valid, text + a neutral voice"):
        assert _table_row(section, name) == [evaluation[name]["metrics"][k] for k in keys], name


def test_fast_model_card_matches_its_config():
    """The fast model's card (0.1's model): its README rows are what its config.json records."""
    import json

    card = json.loads((REPO / "fastdaf" / "default_model" / "fast" / "config.json").read_text())["extra"]["model_card"]
    evaluation = card["valid_metrics"]
    section = _card_section((REPO / "README.md").read_text())
    for command in evaluation["commands"].values():
        assert command in section
    keys = ["MAE", "Corr", "Non0_acc_2", "Non0_F1_score", "Has0_acc_2", "Mult_acc_7"]
    rows = {"fast: text+audio": evaluation["text+audio"], "fast: text only": evaluation["text only"]}
    for name, metrics in rows.items():
        assert _table_row(section, name) == [metrics[k] for k in keys], name
