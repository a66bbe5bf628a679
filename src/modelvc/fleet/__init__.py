"""Fleet rollout: every replica switches versions together, or none does.

agent.py      the gateway side: register, heartbeat, STAGE / FLIP / ABORT by epoch
controller.py the rollout controller: atomic (two-phase), rolling and canary strategies
canary.py     reading the gateways' per-version statistics and judging a canary trial
watch.py      channel moves (promote, rollback) drive a deployment
notify.py     PostgreSQL LISTEN/NOTIFY wake-ups (SQLite: callers poll)
"""
