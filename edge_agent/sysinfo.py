"""What the board says about itself, for health messages: CPU temperature (where it has a sensor), memory.

Linux only, read from /sys and /proc: no extra dependency on a Pi.
"""

from __future__ import annotations

import resource
from pathlib import Path

THERMAL_ZONES = Path("/sys/class/thermal")
CPU_ZONE_TYPES = ("cpu-thermal", "cpu_thermal", "x86_pkg_temp", "soc_thermal", "cpu", "CPU-therm")


def cpu_temperature_c(zones: Path = THERMAL_ZONES) -> float | None:
    """The CPU's temperature in °C: the zone whose type names the CPU, else the first readable zone."""
    readings: list[tuple[bool, float]] = []
    for zone in sorted(zones.glob("thermal_zone*")):
        try:
            kind = (zone / "type").read_text().strip()
            millidegrees = int((zone / "temp").read_text().strip())
        except (OSError, ValueError):
            continue
        readings.append((kind in CPU_ZONE_TYPES, millidegrees / 1000.0))
    if not readings:
        return None
    cpu = [value for is_cpu, value in readings if is_cpu]
    return cpu[0] if cpu else readings[0][1]


def rss_mib() -> float:
    """Resident memory of this process now (peak where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
