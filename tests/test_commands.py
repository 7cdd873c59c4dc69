"""The command line's pure parts: `vkd-jax COMMAND` -> run.py's flags, and packaged config
names. The installed commands themselves: tests/test_packaging.py."""

import os

import pytest

import configs
from vkd_jax import cli


def test_the_command_is_the_mode():
    assert cli.command_argv(["vkd-jax", "train", "--config=c.py", "--workdir=w"]) == [
        "vkd-jax",
        "--mode=train",
        "--config=c.py",
        "--workdir=w",
    ]
    assert cli.command_argv(["vkd-jax", "predict"]) == ["vkd-jax", "--mode=predict"]
    for help_flag in ("--help", "-h", "help"):
        assert cli.command_argv(["vkd-jax", help_flag]) is None
    assert all(f"  {c} " in cli.COMMAND_USAGE for c in ("train", "eval", "predict", "export"))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["vkd-jax"], "give a command"),
        (["vkd-jax", "--workdir=w"], "give a command"),
        (["vkd-jax", "fit"], "unknown command 'fit'"),
        (["vkd-jax", "eval", "--mode=train"], "leave out --mode"),
    ],
)
def test_bad_commands_say_what_to_give(argv, message):
    with pytest.raises(cli.UsageError, match=message):
        cli.command_argv(argv)


def test_packaged_config_names_resolve_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert configs.resolve("configs/demo.py") == os.path.join(configs.PACKAGE_DIR, "demo.py")
    assert configs.resolve("configs/no_such.py") == "configs/no_such.py"  # the caller's error names it
    assert configs.resolve("elsewhere/demo.py") == "elsewhere/demo.py"
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "demo.py").write_text("")
    assert configs.resolve("configs/demo.py") == "configs/demo.py"  # a file here comes first
