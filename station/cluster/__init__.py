"""Several `chargepay serve` nodes on one PostgreSQL, as one station (docs/cluster.md).

`node.ClusterNode` holds this node's charge point leases and runs routed
commands; `commands.ClusterCommands` is the services' command port across
nodes; `events.ClusterEvents` stores session events and hears every node's.
`sqlite_lock` keeps SQLite to one node. Nothing between nodes but PostgreSQL.
"""
