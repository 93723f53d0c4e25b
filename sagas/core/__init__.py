"""The pure saga core: definitions and the transition function. No Django, no I/O."""
