"""One module per `rmteacher` subcommand: its options dataclass and the function that runs it."""
