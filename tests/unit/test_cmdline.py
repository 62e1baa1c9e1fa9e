from __future__ import annotations

import logging
import os

import pytest

from cloudinit_azure.kernel import cmdline
from cloudinit_azure.kernel.cmdline import (
    UnsafeGrubFile,
    add_args,
    arg_key,
    cmdline_words,
    ensure_args,
    has_arg,
    split_args,
)

VAR = "GRUB_CMDLINE_LINUX"
CONSOLE = ["console=ttyS0,115200n8", "earlyprintk=ttyS0"]

DEBIAN = """\
# If you change this file, run 'update-grub' afterwards to update
# /boot/grub/grub.cfg.

GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`
GRUB_CMDLINE_LINUX_DEFAULT="quiet"
GRUB_CMDLINE_LINUX=""

# Uncomment to disable graphical terminal
#GRUB_TERMINAL=console
#GRUB_CMDLINE_LINUX="commented out"
"""

RHEL = """\
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR="$(sed 's, release .*$,,g' /etc/system-release)"
GRUB_DEFAULT=saved
GRUB_DISABLE_SUBMENU=true
GRUB_TERMINAL_OUTPUT="console"
GRUB_CMDLINE_LINUX="crashkernel=auto rd.lvm.lv=rhel/root rhgb quiet"
GRUB_DISABLE_RECOVERY="true"
GRUB_ENABLE_BLSCFG=true
"""


def lines_changed(before: str, after: str) -> list[tuple[str, str]]:
    a, b = before.splitlines(), after.splitlines()
    assert len(a) == len(b)
    return [(x, y) for x, y in zip(a, b) if x != y]


# ------------------------------------------------------------ pure edits


def test_debian_stock_file_edits_only_the_variable_line():
    r = add_args(DEBIAN, VAR, CONSOLE)
    assert r.changed and r.added == tuple(CONSOLE)
    assert lines_changed(DEBIAN, r.text) == [
        ('GRUB_CMDLINE_LINUX=""',
         'GRUB_CMDLINE_LINUX="console=ttyS0,115200n8 earlyprintk=ttyS0"')]


def test_rhel_stock_file_keeps_existing_arguments_in_order():
    r = add_args(RHEL, VAR, ["numa=off"])
    assert cmdline_words(r.text) == [
        "crashkernel=auto", "rd.lvm.lv=rhel/root", "rhgb", "quiet", "numa=off"]
    assert "$(sed 's, release .*$,,g' /etc/system-release)" in r.text


@pytest.mark.parametrize("text", [DEBIAN, RHEL, "", 'GRUB_CMDLINE_LINUX=quiet\n'])
def test_idempotent_across_three_runs(text):
    first = add_args(text, VAR, CONSOLE + ["numa=off"])
    second = add_args(first.text, VAR, CONSOLE + ["numa=off"])
    third = add_args(second.text, VAR, CONSOLE + ["numa=off"])
    assert first.changed
    assert not second.changed and not third.changed
    assert third.text == second.text == first.text
    words = cmdline_words(third.text)
    for arg in CONSOLE + ["numa=off"]:
        assert words.count(arg) == 1


@pytest.mark.parametrize("line, expected_line, words", [
    ('GRUB_CMDLINE_LINUX="quiet splash"', 'GRUB_CMDLINE_LINUX="quiet splash numa=off"',
     ["quiet", "splash", "numa=off"]),
    ("GRUB_CMDLINE_LINUX='quiet splash'", "GRUB_CMDLINE_LINUX='quiet splash numa=off'",
     ["quiet", "splash", "numa=off"]),
    ("GRUB_CMDLINE_LINUX=quiet", 'GRUB_CMDLINE_LINUX="quiet numa=off"', ["quiet", "numa=off"]),
    ("GRUB_CMDLINE_LINUX=", 'GRUB_CMDLINE_LINUX="numa=off"', ["numa=off"]),
    ("GRUB_CMDLINE_LINUX=''", "GRUB_CMDLINE_LINUX='numa=off'", ["numa=off"]),
    ('GRUB_CMDLINE_LINUX="quiet "', 'GRUB_CMDLINE_LINUX="quiet numa=off"', ["quiet", "numa=off"]),
    ('export GRUB_CMDLINE_LINUX="quiet"', 'export GRUB_CMDLINE_LINUX="quiet numa=off"',
     ["quiet", "numa=off"]),
    ('GRUB_CMDLINE_LINUX="quiet"  # keep', 'GRUB_CMDLINE_LINUX="quiet numa=off"  # keep',
     ["quiet", "numa=off"]),
    ('GRUB_CMDLINE_LINUX="a=\\"x y\\" b"', 'GRUB_CMDLINE_LINUX="a=\\"x y\\" b numa=off"',
     ['a="x y"', "b", "numa=off"]),
    ('GRUB_CMDLINE_LINUX="quiet"\'\'', 'GRUB_CMDLINE_LINUX="quiet"\' numa=off\'',
     ["quiet", "numa=off"]),
])
def test_quoting_cases(line, expected_line, words):
    r = add_args(f"A=1\n{line}\nB=2\n", VAR, ["numa=off"])
    assert r.text == f"A=1\n{expected_line}\nB=2\n"
    assert cmdline_words(r.text) == words


def test_variable_set_twice_edits_the_last_assignment():
    text = 'GRUB_CMDLINE_LINUX="first"\nGRUB_CMDLINE_LINUX="second"\n'
    r = add_args(text, VAR, ["numa=off"])
    assert r.text == 'GRUB_CMDLINE_LINUX="first"\nGRUB_CMDLINE_LINUX="second numa=off"\n'
    assert cmdline_words(r.text) == ["second", "numa=off"]


def test_earlier_assignment_does_not_count_once_overwritten():
    text = 'GRUB_CMDLINE_LINUX="numa=off"\nGRUB_CMDLINE_LINUX="quiet"\n'
    r = add_args(text, VAR, ["numa=off"])
    assert r.changed
    assert cmdline_words(r.text) == ["quiet", "numa=off"]


def test_self_reference_keeps_earlier_value():
    text = 'GRUB_CMDLINE_LINUX="numa=off"\nGRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX quiet"\n'
    assert cmdline_words(text) == ["numa=off", "quiet"]
    assert not add_args(text, VAR, ["numa=off"]).changed
    assert cmdline_words('GRUB_CMDLINE_LINUX="${GRUB_CMDLINE_LINUX} x"', VAR, ["a"]) == ["a", "x"]


def test_missing_variable_appends_a_line():
    text = 'GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"'  # no trailing newline
    r = add_args(text, VAR, ["numa=off"])
    assert r.text == text + '\nGRUB_CMDLINE_LINUX="numa=off"\n'
    # the similarly named _DEFAULT variable is not mistaken for ours
    assert cmdline_words(r.text, "GRUB_CMDLINE_LINUX_DEFAULT") == ["quiet"]


def test_commented_assignment_is_ignored():
    assert cmdline_words(DEBIAN) == []
    assert cmdline_words("# GRUB_CMDLINE_LINUX=x\n") == []


@pytest.mark.parametrize("text", [
    'GRUB_CMDLINE_LINUX="$(cat /etc/args)"\n',
    "GRUB_CMDLINE_LINUX=`cat /etc/args`\n",
    'GRUB_CMDLINE_LINUX="a `uname -r`"\n',
    'GRUB_CMDLINE_LINUX="quiet \\\nsplash"\n',
    'GRUB_CMDLINE_LINUX="quiet\nsplash"\n',
    'GRUB_CMDLINE_LINUX="quiet\n',
    "GRUB_CMDLINE_LINUX='quiet\n",
    'GRUB_OTHER="unterminated\nGRUB_CMDLINE_LINUX="x"\n',
    'GRUB_CMDLINE_LINUX=quiet\\ splash\n',
    'GRUB_CMDLINE_LINUX="x"; GRUB_CMDLINE_LINUX="y"\n',
    '[ -e /x ] && GRUB_CMDLINE_LINUX="x"\n',
    'GRUB_CMDLINE_LINUX+=" x"\n',
    'cat <<EOF\nGRUB_CMDLINE_LINUX="x"\nEOF\n',
])
def test_refuses_unsafe_syntax(text):
    with pytest.raises(UnsafeGrubFile):
        add_args(text, VAR, ["numa=off"])


def test_other_variables_may_use_substitution_and_multiline_values():
    text = ('GRUB_DISTRIBUTOR=`lsb_release -i -s`\n'
            'GRUB_X="$(echo "nested \'q\'" )"\n'
            'GRUB_Y="two\nlines GRUB_CMDLINE_LINUX is mentioned"\n'
            'GRUB_CMDLINE_LINUX="quiet"\n')
    r = add_args(text, VAR, ["numa=off"])
    assert r.text == text.replace('LINUX="quiet"', 'LINUX="quiet numa=off"')


def test_assignment_lookalike_anywhere_else_is_refused_conservatively():
    # Shell would not assign here, but the editor does not guess: it refuses.
    with pytest.raises(UnsafeGrubFile):
        add_args('GRUB_Y="GRUB_CMDLINE_LINUX=x"\n', VAR, ["numa=off"])


def test_arguments_needing_quotes_are_refused():
    with pytest.raises(ValueError):
        add_args("", VAR, ['foo="a b"'])
    with pytest.raises(ValueError):
        add_args("", VAR, ["$(reboot)"])


# ------------------------------------------------------------ identity


def test_arg_identity():
    assert arg_key("numa=off") == "numa"
    assert arg_key("quiet") == "quiet"
    assert arg_key("console=ttyS0,115200n8") == "console=ttyS0"
    assert has_arg(["console=ttyS0,9600"], "console=ttyS0,115200n8")
    assert not has_arg(["console=tty0"], "console=ttyS0,115200n8")
    assert has_arg(["numa=fake=4"], "numa=off")
    assert not has_arg(["numa_balancing=0"], "numa=off")


def test_existing_console_kept_and_ours_added_for_another_device():
    r = add_args('GRUB_CMDLINE_LINUX="console=tty0 earlyprintk=vga"\n', VAR, CONSOLE)
    # console=tty0 stays; ttyS0 is added; the author's earlyprintk wins
    assert cmdline_words(r.text) == ["console=tty0", "earlyprintk=vga", "console=ttyS0,115200n8"]
    r = add_args('GRUB_CMDLINE_LINUX="console=ttyS0,9600"\n', VAR, CONSOLE)
    assert cmdline_words(r.text) == ["console=ttyS0,9600", "earlyprintk=ttyS0"]


def test_present_words_from_other_variables_count():
    r = add_args('GRUB_CMDLINE_LINUX=""\n', VAR, CONSOLE,
                 present=["console=tty1", "console=ttyS0", "earlyprintk=ttyS0"])
    assert not r.changed


def test_split_args_honours_kernel_quotes():
    assert split_args(' a  b="c d"\te ') == ["a", 'b="c d"', "e"]


# ------------------------------------------------------------ files under a root


def write(root, rel, text):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


def read(root, rel):
    with open(os.path.join(root, rel)) as f:
        return f.read()


def test_in_place_edit_without_grub_d(tmp_path):
    root = str(tmp_path)
    path = write(root, "etc/default/grub", RHEL)
    os.chmod(path, 0o600)
    out = ensure_args(root, ["numa=off"])
    assert out.changed and out.path == "etc/default/grub" and out.added == ("numa=off",)
    assert "rhgb quiet numa=off" in read(root, "etc/default/grub")
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert not os.path.exists(os.path.join(root, cmdline.DROP_IN))
    again = ensure_args(root, ["numa=off"])
    assert not again.changed and again.refused is None
    assert os.listdir(os.path.dirname(path)) == ["grub"]  # no temp files left


def test_drop_in_when_grub_d_exists_never_edits_distro_file(tmp_path):
    root = str(tmp_path)
    write(root, "etc/default/grub", DEBIAN)
    os.makedirs(os.path.join(root, "etc/default/grub.d"))
    for _ in range(3):
        ensure_args(root, CONSOLE)
    assert read(root, "etc/default/grub") == DEBIAN
    drop = read(root, cmdline.DROP_IN)
    assert drop.startswith("# Managed by cloudinit-azure")
    assert ('GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX console=ttyS0,115200n8 '
            'earlyprintk=ttyS0"\n') in drop
    # as grub-mkconfig would see it: main file, then the drop-in
    assert cmdline.current_words(root) == CONSOLE + ["quiet"]


def test_drop_in_not_created_when_already_configured_elsewhere(tmp_path):
    root = str(tmp_path)
    write(root, "etc/default/grub", DEBIAN)
    # Ubuntu's cloud images set the console in their own drop-in
    write(root, "etc/default/grub.d/50-cloudimg-settings.cfg",
          'GRUB_CMDLINE_LINUX_DEFAULT="console=tty1 console=ttyS0 earlyprintk=ttyS0"\n')
    out = ensure_args(root, CONSOLE)
    assert not out.changed
    assert not os.path.exists(os.path.join(root, cmdline.DROP_IN))


def test_drop_in_adds_numa_later_to_the_same_file(tmp_path):
    root = str(tmp_path)
    write(root, "etc/default/grub", DEBIAN)
    os.makedirs(os.path.join(root, "etc/default/grub.d"))
    ensure_args(root, CONSOLE)
    out = ensure_args(root, CONSOLE + ["numa=off"])
    assert out.added == ("numa=off",)
    assert cmdline.current_words(root) == CONSOLE + ["numa=off", "quiet"]


def test_missing_file_is_skipped_and_logged(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    out = ensure_args(str(tmp_path), ["numa=off"])
    assert not out.changed and out.refused == "no grub defaults file"
    assert "not added" in caplog.text
    assert os.listdir(tmp_path) == []


def test_unsafe_file_left_untouched_with_warning(tmp_path, caplog):
    root = str(tmp_path)
    text = 'GRUB_CMDLINE_LINUX="$(cat /etc/kargs)"\n'
    write(root, "etc/default/grub", text)
    out = ensure_args(root, ["numa=off"])
    assert not out.changed and "command substitution" in out.refused
    assert read(root, "etc/default/grub") == text
    assert any(r.levelno == logging.WARNING for r in caplog.records)


def test_nothing_to_add_touches_nothing(tmp_path):
    assert ensure_args(str(tmp_path), []) == cmdline.CmdlineOutcome(None)


# --- hostile input (issue 13, item 11) ---------------------------------------

def _sh(text: str) -> str:
    """What the shell makes of ``text``: the variable's value and whether X was set."""
    import subprocess

    script = text + '\nprintf "%s|%s" "$GRUB_CMDLINE_LINUX" "${X-unset}"\n'
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.parametrize("line, value", [
    ("GRUB_CMDLINE_LINUX='a b'c", "a bc"),
    ('GRUB_CMDLINE_LINUX="quiet;X=injected;"ro', "quiet;X=injected;ro"),
    ("GRUB_CMDLINE_LINUX=a'$x`y'z", "a$x`yz"),
    ("GRUB_CMDLINE_LINUX=quiet", "quiet"),
])
def test_an_unquoted_ending_is_rewritten_from_its_meaning_never_into_shell_code(line, value):
    before = _sh(line)
    assert before == f"{value}|unset"
    r = add_args(line + "\n", VAR, ["numa=off"])
    assert _sh(r.text) == f"{value} numa=off|unset"  # same value plus ours; nothing ran


@pytest.mark.parametrize("text", [
    'if [ -e /etc/azure ]; then\n  GRUB_CMDLINE_LINUX="x"\nfi\n',
    'if true\nthen\nGRUB_CMDLINE_LINUX="x"\nelse\nGRUB_CMDLINE_LINUX="y"\nfi\n',
    'for i in 1; do\nGRUB_CMDLINE_LINUX="x"\ndone\n',
    'case "$a" in\n  b)\n  GRUB_CMDLINE_LINUX="x"\n  ;;\nesac\n',
    'setup() {\n  GRUB_CMDLINE_LINUX="x"\n}\n',
    '[ -e /x ] && {\nGRUB_CMDLINE_LINUX="x"\n}\n',
])
def test_an_assignment_inside_a_multi_line_compound_statement_is_refused(text):
    with pytest.raises(UnsafeGrubFile, match="compound"):
        add_args(text, VAR, ["numa=off"])


def test_compound_statements_elsewhere_are_fine():
    text = 'if [ -e /x ]; then\n  GRUB_TIMEOUT=1\nfi\nGRUB_X="fi"\nGRUB_CMDLINE_LINUX="q"\n'
    assert add_args(text, VAR, ["numa=off"]).text.endswith('GRUB_CMDLINE_LINUX="q numa=off"\n')


@pytest.mark.parametrize("text", ["GRUB_TIMEOUT=5 \\\n", "GRUB_TIMEOUT=5 \\"])
def test_nothing_is_appended_after_a_trailing_line_continuation(text):
    with pytest.raises(UnsafeGrubFile, match="line continuation"):
        add_args(text, VAR, ["numa=off"])


def test_an_escaped_backslash_or_a_comment_at_the_end_is_no_continuation():
    for text in ("GRUB_TIMEOUT=5 \\\\\n", "# a comment \\\nGRUB_TIMEOUT=5\n"):
        r = add_args(text, VAR, ["numa=off"])
        assert _sh(r.text).startswith("numa=off|")
