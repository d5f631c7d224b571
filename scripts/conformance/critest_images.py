"""The images critest pulls, built offline from a busybox OCI layout.

Usage: python3 critest_images.py BUSYBOX_LAYOUT OUT_LAYOUT

Writes OUT_LAYOUT, an OCI layout with one manifest per reference named in
stdout's lines "REF REPOSITORY:TAG" (REF is the layout's ref.name, REPOSITORY
the path critest asks for, without its registry). Each image is the busybox
layer of the fixture image, a layer with busybox's applets as hard links (as
in busybox's images), busybox's /etc/passwd and /etc/group, and what
cri-tools' images/ Dockerfiles add: a USER, a file named after the image, or
the user and group of image-predefined-group.
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile

SRC, OUT = sys.argv[1], sys.argv[2]
BLOBS = os.path.join(OUT, "blobs", "sha256")


def read_blob(layout, digest):
    with open(os.path.join(layout, "blobs", "sha256", digest.split(":", 1)[1]), "rb") as f:
        return f.read()


def put(data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(BLOBS, digest), "wb") as f:
        f.write(data)
    return "sha256:" + digest


def layer(files):
    """An uncompressed layer: busybox and its applets as hard links to it, then
    regular files (path -> bytes), mode 0644."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("bin/busybox")
        info.size = len(BUSYBOX)
        info.mode = 0o755
        tar.addfile(info, io.BytesIO(BUSYBOX))
        for path in APPLETS:
            info = tarfile.TarInfo(path)
            info.type = tarfile.LNKTYPE
            info.linkname = "bin/busybox"
            # An unpacker may apply a link's mode to the file it shares.
            info.mode = 0o755
            tar.addfile(info)
        for path, data in sorted(files.items()):
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def busybox_and_applets(manifest):
    """The busybox binary of the base layer and the paths of its applets, which
    the fixture has as symbolic links to it: busybox's images have hard links,
    and a masked applet (critest masks /bin/ls) must not mask busybox itself."""
    data = gzip.decompress(read_blob(SRC, manifest["layers"][0]["digest"]))
    binary, applets = None, []
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            name = member.name.lstrip("./")
            if name == "bin/busybox" and member.isfile():
                binary = tar.extractfile(member).read()
            elif member.issym() and os.path.basename(member.linkname) == "busybox":
                applets.append(name)
    if binary is None:
        sys.exit("critest_images: the base layer has no /bin/busybox")
    return binary, sorted(applets)


os.makedirs(BLOBS)
with open(os.path.join(SRC, "index.json")) as f:
    base_desc = json.load(f)["manifests"][0]
base_manifest = json.loads(read_blob(SRC, base_desc["digest"]))
base_config = json.loads(read_blob(SRC, base_manifest["config"]["digest"]))
# The fixture's first layer is busybox; the rest are the fixture's own.
base_manifest["layers"] = base_manifest["layers"][:1]
base_config["rootfs"]["diff_ids"] = base_config["rootfs"]["diff_ids"][:1]
base_config.pop("history", None)
base_config["config"] = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]}
for desc in base_manifest["layers"]:
    put(read_blob(SRC, desc["digest"]))
BUSYBOX, APPLETS = busybox_and_applets(base_manifest)

# busybox's own users and groups (the fixture has others, which would add
# supplementary groups to uid 1000).
PASSWD = (
    b"root:x:0:0:root:/root:/bin/sh\n"
    b"daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
    b"bin:x:2:2:bin:/bin:/bin/false\n"
    b"sys:x:3:3:sys:/dev:/bin/false\n"
    b"sync:x:4:100:sync:/bin:/bin/sync\n"
    b"mail:x:8:8:mail:/var/spool/mail:/bin/false\n"
    b"www-data:x:33:33:www-data:/var/www:/bin/false\n"
    b"operator:x:37:37:Operator:/var:/bin/false\n"
    b"nobody:x:65534:65534:nobody:/home:/bin/false\n"
)
GROUP = (
    b"root:x:0:\ndaemon:x:1:\nbin:x:2:\nsys:x:3:\nadm:x:4:\ntty:x:5:\ndisk:x:6:\n"
    b"lp:x:7:\nmail:x:8:\nkmem:x:9:\nwheel:x:10:root\ncdrom:x:11:\ndialout:x:18:\n"
    b"floppy:x:19:\nvideo:x:28:\naudio:x:29:\ntape:x:32:\nwww-data:x:33:\n"
    b"operator:x:37:\nutmp:x:43:\nplugdev:x:46:\nstaff:x:50:\nlock:x:54:\n"
    b"netdev:x:82:\nusers:x:100:\nnogroup:x:65534:\n"
)
ETC = {"/etc/passwd": PASSWD, "/etc/group": GROUP}
# images/image-predefined-group/Dockerfile: adduser -u 1000 -D default-user,
# addgroup -g 50000 group-defined-in-image, default-user in it.
PREDEFINED = {
    "/etc/passwd": PASSWD + b"default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n",
    "/etc/group": GROUP + b"default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n",
}

STAGING = "k8s-staging-cri-tools/"
# ref -> (repositories:tags, USER or None, files of the extra layer or None)
IMAGES = {
    "busybox": (["e2e-test-images/busybox:1.29-2"], None, None),
    "pause": (["pause:3.6"], None, None),
    "user-uid": ([STAGING + "test-image-user-uid:latest"], "1002", None),
    "user-username": ([STAGING + "test-image-user-username:latest"], "www-data", None),
    "user-uid-group": ([STAGING + "test-image-user-uid-group:latest"], "1003:1004", None),
    "user-username-group": ([STAGING + "test-image-user-username-group:latest"], "www-data:1004", None),
    "predefined-group": ([STAGING + "test-image-predefined-group:latest"], "1000", PREDEFINED),
    "latest": ([STAGING + "test-image-latest:latest"], None, {"/test-image-latest": b""}),
    "tag-test": ([STAGING + "test-image-tag:test"], None, {"/test-image-tag-test": b""}),
    "tag-all": ([STAGING + "test-image-tag:all"], None, {"/test-image-tag-all": b""}),
    "one": ([STAGING + "test-image-1:latest"], None, {"/test-image-1": b""}),
    "two": ([STAGING + "test-image-2:latest"], None, {"/test-image-2": b""}),
    "three": ([STAGING + "test-image-3:latest"], None, {"/test-image-3": b""}),
    "tags": ([STAGING + f"test-image-tags:{n}" for n in (1, 2, 3)], None, {"/test-image-tags": b""}),
}

index = {"schemaVersion": 2, "manifests": []}
for ref, (names, user, files) in IMAGES.items():
    config = json.loads(json.dumps(base_config))
    manifest = json.loads(json.dumps(base_manifest))
    if ref == "pause":
        config["config"]["Cmd"] = ["/bin/sleep", "2147483647"]
    if user is not None:
        config["config"]["User"] = user
    data = layer(dict(ETC, **(files or {})))
    manifest["layers"].append(
        {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": put(data), "size": len(data)}
    )
    config["rootfs"]["diff_ids"].append("sha256:" + hashlib.sha256(data).hexdigest())
    config_bytes = json.dumps(config, sort_keys=True).encode()
    manifest["config"] = {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": put(config_bytes),
        "size": len(config_bytes),
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    index["manifests"].append(
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": put(manifest_bytes),
            "size": len(manifest_bytes),
            "annotations": {"org.opencontainers.image.ref.name": ref},
        }
    )
    for name in names:
        print(ref, name)

with open(os.path.join(OUT, "index.json"), "w") as f:
    json.dump(index, f)
shutil.copy(os.path.join(SRC, "oci-layout"), os.path.join(OUT, "oci-layout"))
