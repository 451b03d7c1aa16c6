"""The local citysense stack: every component as a child process on one machine."""
