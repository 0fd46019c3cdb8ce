"""Shell templates made safe by construction: a value never becomes shell source.

A ``cli`` step with ``shell: true`` is a Jinja template of a shell script, and its
values come from alerts (whoever can name a pod controls a label). Quoting each value
(``shlex.quote``) protects a bare word only: inside ``"..."`` or ``'...'`` the quotes
break out. So the values do not go into the script at all. Each ``{{ expr }}`` becomes
a reference to an environment variable, ``"${PF_T1}"`` as a bare word and ``${PF_T1}``
inside double quotes, and the engine passes the expression's value in that variable.
The shell expands a variable once and never parses the result as code.

That holds only where the shell expands the reference as plain data, so this module
lexes the script (words, ``'...'``, ``"..."``, ``$'...'``, backticks, ``$(...)``,
``${...}``, ``$((...))``, comments, heredocs) to know where each ``{{ }}`` stands. It
refuses the places where the reference would not expand (single quotes, ``$'...'``,
comments, heredoc bodies), where the shell would evaluate the value once more as code
(backticks, arithmetic, ``[[ ]]``, ``eval``, ``let``, the script argument of
``sh -c``), and where it would change the meaning of the text next to it (right after
``$``, a variable name or a backslash; inside ``${...}``). ``{% %}`` blocks are
refused: they would make the script's text depend on the data.

Each placeholder also says whether its value begins a word of its command with no
literal ``--`` before it: a value starting with ``-`` there is read as an option
(``kubectl delete pod "$POD"`` with ``--all``), which the engine refuses unless the
step opts in.

What this module must not do: evaluate anything, or put a value into a script. It is
pure (no I/O, no Jinja); the caller evaluates each expression in its sandbox.
"""

from __future__ import annotations

import dataclasses
import functools
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
_TAG_OPENERS = ("{{", "{%", "{#")
_ENDS = {"{{": "}}", "{%": "%}", "{#": "#}"}

HOW = (
    'give the value to the step as an environment variable (env: {POD: "{{ ... }}"}) '
    'and write "$POD" in the script'
)


class ShellTemplateError(ValueError):
    """The template puts ``{{ }}`` where its value cannot be passed safely."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)


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
class ShellScript:
    """The script to run (no value in it) and the values to pass, by variable."""

    script: str
    placeholders: tuple[Placeholder, ...]


@dataclasses.dataclass(frozen=True)
class _Tag:
    kind: str  # "{{" or "{%"
    expression: str
    offset: int


Item = str | _Tag


def has_template(source: str) -> bool:
    return any(opener in source for opener in _TAG_OPENERS)


@functools.lru_cache(maxsize=256)
def construct(source: str) -> ShellScript:
    """The safe script for ``source``; ShellTemplateError lists every refused place."""
    if not has_template(source):
        return ShellScript(source, ())
    items, problems = _split(source)
    lexer = _Lexer(source, items)
    lexer.run()
    problems += lexer.problems
    if problems:
        raise ShellTemplateError(problems)
    return ShellScript("".join(lexer.out), tuple(lexer.placeholders))


def problems_of(source: str) -> list[str]:
    """What ``construct`` refuses in ``source`` (empty when it is fine)."""
    try:
        construct(source)
    except ShellTemplateError as exc:
        return list(exc.problems)
    return []


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


def argv_problems(argv: Sequence[str]) -> list[str]:
    """Templates in an argv that a program would run as shell code (``sh -c``)."""
    index = shell_script_index(list(argv))
    if index is None or index >= len(argv) or not has_template(argv[index]):
        return []
    return [
        f"command[{index}] is the script of a shell's -c and holds a template: the shell "
        "would run the value as code. Use shell: true (values are passed safely), or "
        'pass values as arguments after the script and use them as "$1", "$2": '
        "['sh', '-c', 'kubectl logs \"$1\" | tail', 'sh', '{{ alert.labels.pod }}']"
    ]


def argv_option_guards(argv: Sequence[str]) -> list[bool]:
    """For each element: a value from a template that could be read as an option.

    True when the element holds a template, does not itself start with a literal
    ``-`` (``--namespace={{ ns }}`` is fine), and no literal ``--`` comes before it.
    """
    guards = []
    after_double_dash = False
    for part in argv:
        guards.append(has_template(part) and not part.startswith("-") and not after_double_dash)
        after_double_dash = after_double_dash or part == "--"
    return guards


# -- Jinja tags ---------------------------------------------------------------------


def _split(source: str) -> tuple[list[Item], list[str]]:
    """The source as characters and tags, with Jinja's whitespace control applied."""
    items: list[Item] = []
    problems: list[str] = []
    strip_next = False
    i = 0
    n = len(source)
    while i < n:
        opener = source[i : i + 2]
        if opener not in _ENDS:
            if not (strip_next and source[i].isspace()):
                items.append(source[i])
                strip_next = False
            i += 1
            continue
        strip_next = False
        start = i
        i += 2
        if i < n and source[i] in "-+":
            if source[i] == "-":
                while items and isinstance(items[-1], str) and items[-1].isspace():
                    items.pop()
            i += 1
        body_start = i
        end = _tag_end(source, i, _ENDS[opener])
        if end is None:
            line, column = _position(source, start)
            problems.append(f"line {line}, column {column}: {opener} is never closed")
            break
        body_end = end
        if source[end - 1 : end] in ("-", "+") and end - 1 >= i:
            strip_next = source[end - 1] == "-"
            body_end = end - 1
        i = end + 2
        if opener == "{#":
            continue
        items.append(_Tag(opener, source[body_start:body_end], start))
    return items, problems


def _tag_end(source: str, i: int, end: str) -> int | None:
    """Index of the ``end`` marker that closes a tag body starting at ``i``.

    Like Jinja's lexer: string literals are skipped and brackets balanced, so
    ``{{ {'a': {'b': 1}} }}`` and ``{{ '}}' }}`` end where Jinja ends them.
    """
    depth = 0
    n = len(source)
    while i < n:
        char = source[i]
        if end == "#}":
            if source.startswith(end, i):
                return i
            i += 1
            continue
        if char in "'\"":
            i += 1
            while i < n and source[i] != char:
                i += 2 if source[i] == "\\" else 1
            i += 1
            continue
        if depth == 0 and source.startswith(end, i):
            return i
        if char in "([{":
            depth += 1
        elif char in ")]}" and depth:
            depth -= 1
        i += 1
    return None


def _position(source: str, offset: int) -> tuple[int, int]:
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


class _Lexer:
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

    def refuse(self, tag: _Tag, where: str, how: str = HOW) -> None:
        line, column = _position(self.source, tag.offset)
        shown = tag.kind + tag.expression + _ENDS[tag.kind]
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
            if isinstance(item, _Tag):
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

    def tag(self, frame: _Frame, tag: _Tag) -> None:
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
        line, column = _position(self.source, tag.offset)
        variable = f"{PREFIX}{len(self.placeholders) + 1}"
        self.placeholders.append(
            Placeholder(tag.expression, variable, command.starts_option(), line, column)
        )
        self.emit("${" + variable + "}" if frame.kind == DQ else '"${' + variable + '}"')
        command.word.dynamic()

    def after_escape(self, tag_next: Item | None) -> bool:
        """Refuse a tag right after a backslash; True when it was one."""
        if isinstance(tag_next, _Tag):
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
            if isinstance(item, _Tag):
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
                    if isinstance(item, _Tag):
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
        if isinstance(following, _Tag):
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
            if isinstance(tag, _Tag) and tag.kind == "{{":
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
