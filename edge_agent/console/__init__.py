"""The reviewers' web console, on the central side (`edge-agent console`, the `console` extra).

It ingests what the fleet publishes (match events, status, health, reports, command answers) into its
own database, shows every open match to a reviewer, and sends the reviewer's verdict back to the device
that raised it as a signed `review` command. See docs/architecture.md and the README's Console section.
"""
