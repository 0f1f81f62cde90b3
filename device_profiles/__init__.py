"""Device profiles: one YAML file per kind of device, parsed into frozen objects.

Built-in profiles ship in this package; users add their own from a directory
(``EDGEFLEET_PROFILES_DIR`` or the ``extra_dirs`` argument). A profile of the same name in a user
directory replaces the built-in one.
"""

from device_profiles.loader import (
    CpuSpec,
    DeviceProfile,
    GpuSpec,
    ProfileError,
    RuntimeSpec,
    ServingSpec,
    builtin_dir,
    load_profile,
    load_profile_file,
    load_profiles,
)

__all__ = [
    "CpuSpec",
    "DeviceProfile",
    "GpuSpec",
    "ProfileError",
    "RuntimeSpec",
    "ServingSpec",
    "builtin_dir",
    "load_profile",
    "load_profile_file",
    "load_profiles",
]
