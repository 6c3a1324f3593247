//! One-call install: the global subscriber configured from the environment.
