"""The application layer: one function (or small class) per use case, typed in and out, that never prints.

The CLI, the API, the console and scheduled jobs call these; each use case owns its audit entry
(:mod:`.audit`). Modules: ``build`` (contract, redactor, registry, store URLs, policies from settings),
``datasets`` (check, snapshot, split, evaluation rows), ``training``, ``evaluation`` (evaluate, gate),
``rollout`` (promote, rollback, status, shadow report), ``keys``, ``decisions`` (from an HTTP request id to
its decisions and back), ``demo`` and ``serving`` (the service assembled for a server process).
"""
