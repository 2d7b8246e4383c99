"""Subcommands of the `edge` CLI; modules here wire stages together, stages never import them."""
