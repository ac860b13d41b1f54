"""``meta.properties``: which cluster and node a data directory belongs to (as in Kafka).

Kafka writes it with ``kafka-storage format -t <cluster-id>`` on every node of a cluster, so
that all of them agree on the cluster id and no directory is started as the wrong node.
:class:`~launch.reference_cluster.ReferenceCluster` formats its nodes' directories the same way;
a standalone node (combined mode) and a controller format their own directory on first start.
"""

from __future__ import annotations

import base64
import os
import uuid
from pathlib import Path

from reference_broker.config import ConfigError, parse_properties

META_PROPERTIES = "meta.properties"


def new_cluster_id() -> str:
    """A random cluster id in Kafka's form (a base64url UUID without padding)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def format_directory(data_dir: Path, cluster_id: str, node_id: int) -> None:
    """Write ``meta.properties`` (atomically), creating the directory if needed."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / META_PROPERTIES
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"version=1\ncluster.id={cluster_id}\nnode.id={node_id}\n")
    os.replace(tmp, path)


def load_identity(data_dir: Path, node_id: int, create: bool) -> str:
    """The cluster id of ``data_dir``; refuses a directory that belongs to another node. An
    unformatted directory is formatted with a new cluster id when ``create``, else refused."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / META_PROPERTIES
    if path.exists():
        props = parse_properties(path.read_text(), str(path))
        stored = int(props.get("node.id", "-1"))
        if stored != node_id:
            raise ConfigError(
                f"log.dirs: {data_dir} belongs to node.id {stored}, "
                f"but this node is node.id {node_id}"
            )
        return props["cluster.id"]
    if not create:
        raise ConfigError(
            f"log.dirs: {data_dir} is not formatted for a cluster: a broker with "
            "process.roles=broker needs a meta.properties holding the controller's cluster.id "
            f"and node.id={node_id} (kconform cluster writes it, as kafka-storage format does)"
        )
    cluster_id = new_cluster_id()
    format_directory(data_dir, cluster_id, node_id)
    return cluster_id
