"""commands/ has one page per subcommand, and each page names every option."""

import click
from conftest import REPO

from clipscope.cli.main import cli, command_names


def test_every_subcommand_and_option_is_documented():
    ctx = click.Context(cli)
    for name in command_names():
        page = REPO / "commands" / f"{name}.md"
        assert page.exists(), f"commands/{name}.md is missing (python tools/gen_command_docs.py)"
        text = page.read_text()
        assert f"# clipscope {name}" in text
        for sub in ("## Usage", "## Options", "## Outputs", "## Examples"):
            assert sub in text, (name, sub)
        cmd = cli.get_command(ctx, name)
        params = list(cmd.params) + [p for sub in getattr(cmd, "commands", {}).values() for p in sub.params]
        for p in params:
            for opt in getattr(p, "opts", []):
                if opt.startswith("-"):
                    assert f"`{opt}`" in text, f"{opt} of {name} is missing from commands/{name}.md"


def test_help_of_every_command_has_an_example(run_cli):
    for name in command_names():
        code, out, _ = run_cli(name, "--help")
        assert code == 0 and "Example" in out, name


def test_every_registered_metric_is_documented():
    """The metric registry (clipscope/metric_specs.py) and commands/*.md agree."""
    from clipscope.metric_specs import SPECS, display

    for spec in SPECS:
        text = (REPO / "commands" / f"{spec.command}.md").read_text()
        assert f"`{display(spec).replace('|', chr(92) + '|')}`" in text, (spec.command, spec.pattern)
        assert spec.description and spec.higher_is_better in (True, False, None), spec.pattern


