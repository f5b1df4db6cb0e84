"""Reactors: capability-checked intents, durable in a journal, handled by pure reactors.

See docs/reactors.md for the design; each module's docstring says what it owns.
"""
