"""A task's identity: one digest of everything its result depends on, with named parts.

Everything in nbflow that asks "is this the same task?" asks this module: the cache key, resume,
the flow version (``run.flow_version``, ``flow.versions()``, :func:`nbflow.diff_versions`) and
``run.why()``. The identity of a task covers:

- ``source``: the function's code, as the syntax tree of its source (comments, blank lines and
  decorators do not count) when the source is a notebook cell's (held in memory), else its
  bytecode, constants and names: code from a file counts as loaded, not as the file reads now;
- ``default x``: each default and keyword-only default, by value;
- ``closure x``: each closure variable, by value;
- ``global x``: each global name the code loads (nested functions and comprehensions included),
  as it is bound *now*, by value. A library module counts by its name and version; a
  module of user code read through attributes (``mylib.f``) by those attributes, used whole
  by its globals as loaded, the user modules among them recursively (a reload is seen, an
  edit of its file not yet reloaded is not: the old code runs); a function or class defined
  in user code (a notebook, a local file) by its own identity, recursively, so editing a
  helper changes every task that calls it; a library function or class by its qualified
  name and its package's version;
- ``import m``: each module the body imports, as loaded now (not imported yet, of user
  code: no digest); ``environment X``: each environment variable read by a literal name
  (:mod:`nbflow.identity.reads`). A read nbflow cannot follow (``globals()``, ``eval``,
  ``exec``, ``sys.modules``, ``importlib.import_module``, a frame, ``os.environ`` with a
  computed key) leaves the identity without a digest, with a :class:`CacheWarning`;
- ``functools.partial`` objects by their function and arguments, bound methods by their
  function and instance, callable objects by their class and state;
- the options that shape a result (``fan_out``, ``allow_partial``) and the user code in the
  options (``when=``, ``cache_key=``, ``retry_if``).

Values are hashed by content: scalars with their types; a list, tuple or dict in its order
(code can read a dict's order), a set in none (its order changes with each process); a
subclass of those by its class and state too (an ``OrderedDict``'s order, a ``defaultdict``'s
factory); numpy arrays by dtype, shape and bytes; a pandas DataFrame, Series or Index by all
code reading it sees (values with their exact types, dtypes with a categorical's categories
and order, labels with their types, index, column and level names, ``attrs``, flags); an
object of a user class
by its class's identity and its state, a bound method (``types.MethodType(f, obj)`` too), a
``staticmethod``, ``classmethod`` or ``functools.partial`` by its function and what it holds,
anything else by the SHA-256 of its pickle and the identity of the user functions and
classes the pickle names (a bound method in it as its function bound to its instance). A
value that cannot be hashed leaves the identity without a digest: no cached or resumed
result can match it (a :class:`CacheWarning` says which variable, once). Functions and
classes that reach themselves are identified as a group (:mod:`nbflow.identity.recursion`).

Values are read when the identity is computed, at the start of each run: a global changed by
a later cell is seen by the next run. :class:`Identities` remembers, per flow, what cannot
have changed since the last run (the facts of a code object; a function whose code,
defaults, closure and globals are the very same objects, the mutable ones among them
hashing as they did), so an unchanged flow costs under a microsecond per task (tasks made
in a loop), a few when each task closes over objects of its own. Memos hold the objects
they describe (never their ``id()``), and entries not used by the latest run are dropped.
"""

from .code import (
    CodeFacts,
    code_facts,
    is_library,
    source_digest,
    source_text,
    user_sources,
    write_only_names,
)
from .model import (
    DIGEST_SIZE,
    IDENTITY_OF,
    IGNORE,
    PART_DEPTH,
    SEP,
    CacheWarning,
    FlowIdentity,
    Identity,
    Part,
    flow_version,
    identity_options,
    is_code_path,
    parts_digest,
    sha,
)
from .values import Unhashable, show
from .walk import Identities

__all__ = [
    "DIGEST_SIZE",
    "IDENTITY_OF",
    "IGNORE",
    "PART_DEPTH",
    "SEP",
    "CacheWarning",
    "CodeFacts",
    "FlowIdentity",
    "Identities",
    "Identity",
    "Part",
    "Unhashable",
    "code_facts",
    "flow_version",
    "identity_options",
    "is_code_path",
    "is_library",
    "parts_digest",
    "sha",
    "show",
    "source_digest",
    "source_text",
    "user_sources",
    "write_only_names",
]
