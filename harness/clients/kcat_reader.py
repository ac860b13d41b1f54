"""kcat as a reader: what a partition holds, as the kcat command-line tool sees it.

kcat (librdkafka's command-line client) is what operators reach for first, so a broker whose
records other clients read but kcat cannot is broken for them. It has no API to host a
workload in, so it joins the suite only as a reader of what a workload client wrote
(``client-interop[java>kcat]``): ``kcat -C -e -J`` reads one partition from an offset to its end
and prints one JSON object per record, which becomes a :class:`ConsumedRecord`.
"""

from __future__ import annotations

import json
import shutil
import subprocess

from harness.clients.base import ClientError, ClientUnavailable, ConsumedRecord


def kcat_path() -> str:
    """The kcat executable; ClientUnavailable (with what to install) when there is none."""
    path = shutil.which("kcat") or shutil.which("kafkacat")
    if path is None:
        raise ClientUnavailable("kcat is not installed (Debian/Ubuntu: apt-get install kcat; scripts/setup "
                                "installs it when run as root)")
    return path


def kcat_read(bootstrap: str, topic: str, partition: int, start: int, timeout_s: float = 60.0) -> list[ConsumedRecord]:
    """Every record of ``topic``-``partition`` from ``start`` to the partition's end, read by kcat.

    ClientError when kcat fails or does not finish within ``timeout_s`` (its stderr quoted)."""
    command = [kcat_path(), "-C", "-b", bootstrap, "-t", topic, "-p", str(partition), "-o", str(start), "-e", "-J",
               "-q", "-X", "socket.timeout.ms=10000"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise ClientError("TIMEOUT", f"kcat did not reach the end of {topic}-{partition} in {timeout_s:.0f} s") from None
    if done.returncode != 0:
        raise ClientError("KCAT_FAILED", f"kcat exited with {done.returncode}: {done.stderr.strip()[-500:]}")
    records = []
    for line in done.stdout.splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            raise ClientError("KCAT_OUTPUT", f"kcat printed a line that is not JSON: {line[:200]!r}") from None
        key, value = obj.get("key"), obj.get("payload")
        records.append(ConsumedRecord(obj["topic"], int(obj["partition"]), int(obj["offset"]),
                                      key.encode() if key is not None else None,
                                      value.encode() if value is not None else None))
    return records
