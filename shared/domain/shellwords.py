"""The shell lexer behind ``shared.domain.shellscripts``: where a ``{{ }}`` stands.

It reads a shell script the way POSIX sh (and bash, for what sh lacks) splits it:
words and simple commands, ``'...'``, ``"..."``, ``$'...'``, backticks, ``$(...)``,
``${...}``, ``$((...))``, comments and heredocs, with each Jinja tag as one opaque
item. For every tag it either emits a reference to the environment variable that
will carry its value, or records why that place cannot be protected.

What this module must not do: guess. A context it does not understand must end in
a refusal or in a reference that the shell expands as data, never in value text.
Pure: no I/O, no Jinja.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from collections.abc import Callable, Sequence

# Environment variables that carry the values: PF_T1, PF_T2, ... A step's own env
# may not use these names (shared.resources refuses them).
PREFIX = "PF_T"
RESERVED_NAME = re.compile(rf"^{PREFIX}[0-9]+$")

# Programs that run their argument of ``-c`` as shell code.
SHELLS = frozenset(
    {"sh", "bash", "dash", "zsh", "ash", "ksh", "mksh", "yash", "busybox", "csh", "tcsh", "fish"}
)
# Shell options that take the next word as their argument.
_OPTIONS_WITH_ARGUMENT = frozenset({"-o", "+o", "-O", "+O", "--rcfile", "--init-file"})
# Words before a command's name that do not name it.
_RESERVED_WORDS = frozenset(
    {"!", "{", "}", "if", "then", "elif", "else", "do", "while", "until", "time", "fi", "done"}
)
_WRAPPERS = frozenset({"command", "builtin", "exec", "nohup", "env"})
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_NAME_START = re.compile(r"[A-Za-z_]")
_NAME_CHAR = re.compile(r"[A-Za-z0-9_]")
_SPECIAL_PARAMETERS = frozenset("0123456789@*#?$!-")
_BLANKS = frozenset(" \t")
TAG_OPENERS = ("{{", "{%", "{#")
ENDS = {"{{": "}}", "{%": "%}", "{#": "#}"}

HOW = (
    'give the value to the step as an environment variable (env: {POD: "{{ ... }}"}) '
    'and write "$POD" in the script'
)


@dataclasses.dataclass(frozen=True)
class Placeholder:
    """One ``{{ expression }}`` of the template and the variable that carries its value."""

    expression: str
    variable: str
    # The value starts a word of its command with no literal ``--`` before it: a
    # leading ``-`` would make it an option.
    starts_word: bool
    line: int
    column: int

    @property
    def tag(self) -> str:
        return "{{" + self.expression + "}}"


@dataclasses.dataclass(frozen=True)
class Tag:
    kind: str  # "{{" or "{%"
    expression: str
    offset: int


Item = str | Tag


def shell_script_index(words: Sequence[str | None]) -> int | None:
    """Where the script of ``sh -c SCRIPT`` is among ``words`` (may be ``len(words)``).

    ``words`` are the literal words of one command (None for one that is not
    literal). The shell may come after wrappers (``env``, ``xargs``, ``kubectl exec
    POD --``) and be a path (``/bin/bash``); options may be grouped (``-lc``, ``-ec``).
    None when no shell in ``words`` is given ``-c``.
    """
    for start, word in enumerate(words):
        if word is None or posixpath.basename(word) not in SHELLS:
            continue
        given_c = False
        index = start + 1
        while index < len(words):
            option = words[index]
            if option is None:
                break
            if option == "--":
                index += 1
                break
            if option in _OPTIONS_WITH_ARGUMENT:
                index += 2
                continue
            if option.startswith(("-", "+")) and len(option) > 1:
                if option.startswith("-") and not option.startswith("--") and "c" in option:
                    given_c = True
                index += 1
                continue
            break
        if given_c:
            return index
    return None


def position(source: str, offset: int) -> tuple[int, int]:
    line = source.count("\n", 0, offset) + 1
    return line, offset - (source.rfind("\n", 0, offset) + 1) + 1


# -- the shell ----------------------------------------------------------------------

TOP, CMDSUB, DQ, SQ, DSQ, BQ, PARAM, ARITH, COMMENT = (
    "top",
    "$(...)",
    '"..."',
    "'...'",
    "$'...'",
    "`...`",
    "${...}",
    "arithmetic",
    "comment",
)
# Where a {{ }} cannot stand, by the context around it, and why.
_REFUSED_IN = {
    SQ: "inside single quotes, where the shell does not expand variables",
    DSQ: "inside $'...', where the shell does not expand variables",
    BQ: "inside backticks, where the shell would parse the value as code",
    PARAM: "inside ${...}, where the value would become part of a parameter expansion",
    ARITH: "inside an arithmetic expression, which evaluates the value as code",
    COMMENT: "inside a comment",
}


class _Word:
    """The word being read: its literal text, if it is literal."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.literal = True
        self.started = False
        self.content = False

    def add(self, char: str) -> None:
        self.text.append(char)
        self.started = self.content = True

    def dynamic(self) -> None:
        self.literal = False
        self.started = self.content = True


class _Command:
    """The simple command being read, as far as the checks need it."""

    def __init__(self) -> None:
        self.words: list[str | None] = []
        self.word = _Word()
        # The current word is the target of a redirection, not an argument.
        self.redirect = False

    def end_word(self) -> None:
        word = self.word
        if word.started:
            if self.redirect:
                self.redirect = False
            else:
                self.words.append("".join(word.text) if word.literal else None)
        self.word = _Word()

    def end(self) -> None:
        self.end_word()
        self.words = []
        self.redirect = False

    def refusal(self) -> str | None:
        """Why a value in the current word would be run as code, if it would."""
        words = self.words
        if "[[" in words and "]]" not in words[len(words) - words[::-1].index("[[") :]:
            return "inside [[ ]], whose operators evaluate values as arithmetic (use [ ])"
        name = _command_name(words)
        if name in ("eval", "let"):
            return f"an argument of {name}, which runs its arguments as code"
        if shell_script_index(words) == len(words):
            return "in the script of a shell's -c, which runs it as code"
        return None

    def starts_option(self) -> bool:
        return not self.word.content and not self.redirect and "--" not in self.words


def _command_name(words: Sequence[str | None]) -> str | None:
    for word in words:
        if word is None:
            return None
        if word in _RESERVED_WORDS or word in _WRAPPERS or _ASSIGNMENT.match(word):
            continue
        return word
    return None


@dataclasses.dataclass
class _Frame:
    kind: str
    command: _Command
    depth: int = 0


@dataclasses.dataclass
class _Heredoc:
    delimiter: str
    strip_tabs: bool


class Lexer:
    def __init__(self, source: str, items: list[Item]) -> None:
        self.source = source
        self.items = items
        self.i = 0
        self.out: list[str] = []
        self.problems: list[str] = []
        self.placeholders: list[Placeholder] = []
        self.stack = [_Frame(TOP, _Command())]
        self.heredocs: list[_Heredoc] = []

    # -- helpers ---------------------------------------------------------------------
    def peek(self, ahead: int = 0) -> Item | None:
        index = self.i + ahead
        return self.items[index] if index < len(self.items) else None

    def emit(self, text: str, count: int = 1) -> None:
        self.out.append(text)
        self.i += count

    def refuse(self, tag: Tag, where: str, how: str = HOW) -> None:
        line, column = position(self.source, tag.offset)
        shown = tag.kind + tag.expression + ENDS[tag.kind]
        self.problems.append(f"line {line}, column {column}: {shown} is {where}; {how}")
        self.i += 1

    def push(self, kind: str, command: _Command | None = None) -> None:
        self.stack.append(_Frame(kind, command or self.stack[-1].command))

    # -- the loop --------------------------------------------------------------------
    def run(self) -> None:
        handlers: dict[str, Callable[[_Frame, str], None]] = {
            TOP: self.top,
            CMDSUB: self.top,
            DQ: self.double_quoted,
            SQ: lambda frame, char: self.until(char, "'", escapes=False),
            DSQ: lambda frame, char: self.until(char, "'", escapes=True),
            BQ: lambda frame, char: self.until(char, "`", escapes=True),
            COMMENT: self.comment,
            PARAM: self.parameter,
            ARITH: self.arithmetic,
        }
        while self.i < len(self.items):
            frame = self.stack[-1]
            item = self.items[self.i]
            if isinstance(item, Tag):
                self.tag(frame, item)
            else:
                handlers[frame.kind](frame, item)
        open_quotes = [f.kind for f in self.stack if f.kind in (DQ, SQ, DSQ, BQ, CMDSUB, PARAM)]
        if open_quotes and self.placeholders:
            self.problems.append(f"the script ends inside {open_quotes[-1]}")

    def comment(self, frame: _Frame, char: str) -> None:
        if char == "\n":
            self.stack.pop()  # the newline itself ends the command, in the frame below
        else:
            self.emit(char)

    def tag(self, frame: _Frame, tag: Tag) -> None:
        if tag.kind == "{%":
            self.refuse(
                tag,
                "a block, which shell templates do not allow",
                "compute the value in an earlier step or a conditional, or "
                'use {{ cond and "a" or "b" }}',
            )
            return
        for outer in reversed(self.stack):
            if outer.kind in _REFUSED_IN:
                self.refuse(tag, _REFUSED_IN[outer.kind])
                return
        command = frame.command
        why = command.refusal()
        if why is not None:
            self.refuse(tag, why)
            return
        line, column = position(self.source, tag.offset)
        variable = f"{PREFIX}{len(self.placeholders) + 1}"
        self.placeholders.append(
            Placeholder(tag.expression, variable, command.starts_option(), line, column)
        )
        self.emit("${" + variable + "}" if frame.kind == DQ else '"${' + variable + '}"')
        command.word.dynamic()

    def after_escape(self, tag_next: Item | None) -> bool:
        """Refuse a tag right after a backslash; True when it was one."""
        if isinstance(tag_next, Tag):
            self.emit("\\")
            self.refuse(tag_next, "right after a backslash, which would change its quoting")
            return True
        return False

    def top(self, frame: _Frame, char: str) -> None:
        """A character outside quotes: a word's, a quote's start, or an operator."""
        word = frame.command.word
        following = self.peek(1)
        if char == "\\":
            if self.after_escape(following):
                return
            if following is None:
                self.emit(char)
                return
            assert isinstance(following, str)
            if following != "\n":  # a backslash-newline joins lines
                word.add(following)
            self.emit(char + following, 2)
        elif char in "'\"":
            word.started = True
            self.push(SQ if char == "'" else DQ)
            self.emit(char)
        elif char == "`":
            word.dynamic()
            self.push(BQ)
            self.emit(char)
        elif char == "$":
            self.dollar(word, in_quotes=False)
        elif char == "#" and not word.started:
            self.push(COMMENT)
            self.emit(char)
        elif char in _BLANKS or char in "\n;&|()<>":
            self.operator(frame, char, following)
        else:
            word.add(char)
            self.emit(char)

    def operator(self, frame: _Frame, char: str, following: Item | None) -> None:
        """A blank or an operator: ends the word, and the command unless a blank."""
        command = frame.command
        if char in "<>":
            self.redirection(command, char, following)
        elif char in _BLANKS:
            command.end_word()
            self.emit(char)
        elif char == "(" and following == "(" and not command.word.started and not command.words:
            self.push(ARITH)  # (( arithmetic )) as a command
            self.emit("((", 2)
        elif char == ")" and frame.kind == CMDSUB and frame.depth == 0:
            command.end()
            self.stack.pop()
            self.emit(char)
        else:
            if frame.kind == CMDSUB and char in "()":
                frame.depth = max(0, frame.depth + (1 if char == "(" else -1))
            command.end()
            self.emit(char)
            if char == "\n":
                self.heredoc_bodies()

    def redirection(self, command: _Command, char: str, following: Item | None) -> None:
        word = command.word
        if word.literal and word.text and "".join(word.text).isdigit():
            word.text, word.started = [], False  # an IO number (2>), not an argument
        command.end_word()
        if char == "<" and following == "<":
            if self.peek(2) == "<":
                self.emit("<<<", 3)
                command.redirect = True
                return
            self.emit("<<", 2)
            strip_tabs = self.peek() == "-"
            if strip_tabs:
                self.emit("-")
            self.heredoc_delimiter(strip_tabs)
            return
        self.emit(char)
        while self.peek() in (">", "&", "|"):
            self.emit(str(self.peek()))
        command.redirect = True

    def heredoc_delimiter(self, strip_tabs: bool) -> None:
        while self.peek() in _BLANKS:
            self.emit(str(self.peek()))
        text: list[str] = []
        quote: str | None = None
        while (item := self.peek()) is not None:
            if isinstance(item, Tag):
                self.refuse(item, "in a heredoc delimiter")
                continue
            if quote:
                if item == quote:
                    quote = None
                else:
                    text.append(item)
            elif item in "'\"":
                quote = item
            elif item == "\\" and isinstance(self.peek(1), str):
                self.emit(item)
                item = str(self.peek())
                text.append(item)
            elif item in _BLANKS or item in "\n;&|<>()":
                break
            else:
                text.append(item)
            self.emit(item)
        self.heredocs.append(_Heredoc("".join(text), strip_tabs))

    def heredoc_bodies(self) -> None:
        """After a newline: the bodies of the heredocs opened on the line before."""
        pending, self.heredocs = self.heredocs, []
        for heredoc in pending:
            while self.i < len(self.items):
                line: list[str] = []
                literal = True
                while (item := self.peek()) is not None and item != "\n":
                    if isinstance(item, Tag):
                        self.refuse(item, "inside a heredoc body, which is not a shell word")
                        literal = False
                        continue
                    line.append(item)
                    self.emit(item)
                if self.peek() == "\n":
                    self.emit("\n")
                text = "".join(line)
                if literal and (text.lstrip("\t") if heredoc.strip_tabs else text) == (
                    heredoc.delimiter
                ):
                    break

    def dollar(self, word: _Word, *, in_quotes: bool) -> None:
        following = self.peek(1)
        word.dynamic()
        if isinstance(following, Tag):
            self.emit("$")
            self.refuse(following, "right after $, as part of a variable name")
        elif following == "'" and not in_quotes:
            self.push(DSQ)
            self.emit("$'", 2)
        elif following == "(":
            if self.peek(2) == "(":
                self.push(ARITH)
                self.emit("$((", 3)
            else:
                self.push(CMDSUB, _Command())
                self.emit("$(", 2)
        elif following == "{":
            self.push(PARAM)
            self.emit("${", 2)
        elif isinstance(following, str) and _NAME_START.match(following):
            self.emit("$")
            while isinstance(item := self.peek(), str) and _NAME_CHAR.match(item):
                self.emit(item)
            tag = self.peek()
            if isinstance(tag, Tag) and tag.kind == "{{":
                self.refuse(
                    tag,
                    "right after a variable name, which it would extend",
                    "write ${NAME} before it, or " + HOW,
                )
        elif following in _SPECIAL_PARAMETERS:
            self.emit("$" + str(following), 2)
        else:
            self.emit("$")

    def double_quoted(self, frame: _Frame, char: str) -> None:
        word = frame.command.word
        following = self.peek(1)
        if char == '"':
            self.stack.pop()
            self.emit(char)
        elif char == "\\":
            if self.after_escape(following):
                return
            if isinstance(following, str) and following in '$`"\\\n':
                word.add(following)
                self.emit(char + following, 2)
            else:
                word.add(char)
                self.emit(char)
        elif char == "$":
            self.dollar(word, in_quotes=True)
        elif char == "`":
            word.dynamic()
            self.push(BQ)
            self.emit(char)
        else:
            word.add(char)
            self.emit(char)

    def until(self, char: str, end: str, *, escapes: bool) -> None:
        """Inside quotes that end at ``end`` (tags there are refused by ``tag``)."""
        if escapes and char == "\\" and isinstance(self.peek(1), str):
            self.emit(char + str(self.peek(1)), 2)
            return
        if char == end:
            self.stack.pop()
        elif end == "'" and not escapes:
            self.stack[-1].command.word.add(char)
        else:
            self.stack[-1].command.word.dynamic()
        self.emit(char)

    def parameter(self, frame: _Frame, char: str) -> None:
        if char == "\\" and isinstance(self.peek(1), str):
            self.emit(char + str(self.peek(1)), 2)
        elif char == "{":
            frame.depth += 1
            self.emit(char)
        elif char == "}":
            if frame.depth == 0:
                self.stack.pop()
            frame.depth -= 1
            self.emit(char)
        elif char == "'":
            self.push(SQ)
            self.emit(char)
        elif char == '"':
            self.push(DQ)
            self.emit(char)
        elif char == "$":
            self.dollar(frame.command.word, in_quotes=True)
        else:
            self.emit(char)

    def arithmetic(self, frame: _Frame, char: str) -> None:
        if char == "(":
            frame.depth += 1
        elif char == ")":
            if frame.depth == 0 and self.peek(1) == ")":
                self.stack.pop()
                self.emit("))", 2)
                return
            frame.depth = max(0, frame.depth - 1)
        elif char == "$":
            self.dollar(frame.command.word, in_quotes=True)
            return
        self.emit(char)
