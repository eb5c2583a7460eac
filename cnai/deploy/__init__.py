"""From approval to traffic: the deploy workflow's steps (canary on the predict function's `live` alias, alarms,
promotion or rollback), the approval event it starts on, and the `cnai models approve|reject|rollback|promote`
commands that act on the registry and the alias and write each action to the audit trail. See docs/deploy.md."""
