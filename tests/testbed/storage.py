"""The test node's storage provisioner (test infrastructure): PVCs become host directories.

It installs a default StorageClass whose provisioner it is, and acts as an external
provisioner for it (and for claims with no class): for each pending claim it creates a
hostPath PersistentVolume pre-bound to the claim, in a directory named for the claim's
namespace, name and uid; kube-controller-manager's PV controller then binds the two, so claim
and volume status stay honest. When a claim is deleted, its volume is Released and this
deletes volume and directory, as reclaimPolicy Delete says.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from testbed.kubeapi import ApiError, KubeClient, Object

PROVISIONER = "devspace.test/hostpath"
STORAGE_CLASS = "testbed-hostpath"


class Provisioner:
    """Creates and reclaims hostPath PersistentVolumes under `directory`."""

    def __init__(self, api: KubeClient, directory: Path) -> None:
        """Provision into `directory` (made here)."""
        self.api = api
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._provisioned: set[str] = set()

    def install(self) -> None:
        """Create the default StorageClass if it is missing. Raises ApiError."""
        storage_class = {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": STORAGE_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": PROVISIONER,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
        }
        try:
            self.api.create("/apis/storage.k8s.io/v1/storageclasses", storage_class)
        except ApiError as error:
            if error.status != 409:
                raise

    def sync(self, claims: dict[str, Object]) -> None:
        """Provision for every pending claim of ours; reclaim volumes of deleted claims.

        `claims` is every PersistentVolumeClaim in the cluster, by uid. Raises ApiError.
        """
        for uid, claim in claims.items():
            if uid not in self._provisioned and self._wants_volume(claim):
                self._provision(claim)
                self._provisioned.add(uid)
        for uid in self._provisioned - claims.keys():
            self._reclaim(uid)
            self._provisioned.discard(uid)

    @staticmethod
    def _wants_volume(claim: Object) -> bool:
        spec = claim["spec"]
        return (
            not spec.get("volumeName")
            and claim.get("status", {}).get("phase", "Pending") == "Pending"
            and not claim["metadata"].get("deletionTimestamp")
            and spec.get("storageClassName") in (None, "", STORAGE_CLASS)
        )

    def _provision(self, claim: Object) -> None:
        meta, spec = claim["metadata"], claim["spec"]
        path = self.directory / f"{meta['namespace']}_{meta['name']}_{meta['uid']}"
        path.mkdir(exist_ok=True)
        path.chmod(0o777)  # as hostPath provisioners make them: any pod user may write
        volume = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": _volume_name(meta["uid"]),
                "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
            },
            "spec": {
                "capacity": {"storage": spec["resources"]["requests"]["storage"]},
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "storageClassName": spec.get("storageClassName") or "",
                "persistentVolumeReclaimPolicy": "Delete",
                "volumeMode": spec.get("volumeMode", "Filesystem"),
                "hostPath": {"path": str(path), "type": "Directory"},
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        try:
            self.api.create("/api/v1/persistentvolumes", volume)
        except ApiError as error:
            if error.status != 409:
                raise

    def _reclaim(self, claim_uid: str) -> None:
        try:
            volume = self.api.get(f"/api/v1/persistentvolumes/{_volume_name(claim_uid)}")
            self.api.delete(f"/api/v1/persistentvolumes/{_volume_name(claim_uid)}")
        except ApiError as error:
            if error.status == 404:
                return
            raise
        shutil.rmtree(volume["spec"]["hostPath"]["path"], ignore_errors=True)


def _volume_name(claim_uid: str) -> str:
    return f"pvc-{claim_uid}"
