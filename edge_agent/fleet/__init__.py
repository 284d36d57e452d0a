"""Fleet operations: signed commands from the central side, and their handling on a device."""
