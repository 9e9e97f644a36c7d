from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


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
    package -= {"fastdaf/__init__.py", "fastdaf/_checkout.py", "fastdaf/__pycache__", "fastdaf/triton_client.py"}
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


def test_model_card_in_readme_matches_the_bundled_config():
    """The README's model card shows what config.json records, each figure beside the command that makes it."""
    import json

    card = json.loads((REPO / "fastdaf" / "default_model" / "config.json").read_text())["extra"]["model_card"]
    evaluation = card["valid_metrics"]
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## The bundled model") : readme.index("## Train, evaluate, ablate")]
    for command in evaluation["commands"].values():
        assert command in section
    keys = ["MAE", "Corr", "Non0_acc_2", "Non0_F1_score", "Has0_acc_2", "Has0_F1_score", "Mult_acc_5", "Mult_acc_7"]
    rows = {
        "text+audio": evaluation["text+audio"],
        "text+audio, audio shuffled (5 seeds, mean)": evaluation["controls"]["audio"]["shuffled"],
        "text+audio, audio constant (5 seeds, mean)": evaluation["controls"]["audio"]["constant"],
        "text only": evaluation["text only"],
        "audio only": evaluation["audio only"],
    }
    for name, metrics in rows.items():
        line = next(row for row in section.splitlines() if row.startswith(f"| {name} |"))
        cells = [c.strip() for c in line.strip("|").split("|")][2:]
        assert [float(c) for c in cells] == [metrics[k] for k in keys], name
    assert evaluation["controls"]["audio"]["informative"] is True and evaluation["controls"]["text"]["informative"]
