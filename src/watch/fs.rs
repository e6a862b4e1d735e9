//! Which parts of a root raise no events for changes made elsewhere: network and FUSE
//! filesystems. inotify sees what this machine writes; a file another NFS or SMB client
//! writes, or one an sshfs/rclone mount's far side changes, raises nothing here. Those
//! parts are found by the filesystem type `statfs` reports for the root and for every
//! mount point below it (from `/proc/self/mountinfo`), and the mirror polls them.

use std::io;
use std::path::{Path, PathBuf};

/// A part of the root whose remote changes raise no local events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlindSpot {
    /// Relative to the root; empty for the root itself.
    pub rel: String,
    /// The filesystem's name as the mount table has it (`nfs4`, `cifs`, `fuse.sshfs`), or
    /// the kind `statfs` reported when the mount table does not say.
    pub fs: String,
}

impl BlindSpot {
    /// For status and the log: where, and why it is polled.
    pub fn describe(&self) -> String {
        let at = if self.rel.is_empty() {
            "the whole root".to_string()
        } else {
            self.rel.clone()
        };
        format!(
            "{at} ({}: changes made by other machines raise no events)",
            self.fs
        )
    }
}

/// The kinds of filesystem whose changes made by other machines (or by a FUSE daemon's far
/// side) raise no inotify events here, by `statfs` `f_type`; `None` for local ones.
pub fn event_blind_kind(f_type: u64) -> Option<&'static str> {
    Some(match f_type {
        0x6969 => "nfs",
        0x517B => "smb",
        0xFF53_4D42 => "cifs",
        0xFE53_4D42 => "smb2",
        0x6573_5546 => "fuse",
        0x0102_1997 => "9p",
        0x00C3_6400 => "ceph",
        0x5346_414F => "afs",
        0x6B41_4653 => "afs",
        0x0BD0_0BD0 => "lustre",
        0x0116_1970 => "gfs2",
        0x7461_636F => "ocfs2",
        0x564C => "ncp",
        0x6264_6576 => "vboxsf",
        0x786F_4256 => "vboxsf",
        _ => return None,
    })
}

/// The filesystem type `statfs` reports for `path`.
pub fn statfs_type(path: &Path) -> io::Result<u64> {
    let st = rustix::fs::statfs(path).map_err(io::Error::from)?;
    // `f_type` is signed on some targets; the magic numbers are 32-bit.
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_type as u64 & 0xFFFF_FFFF)
}

/// Mount points at or below `root` in a `/proc/self/mountinfo` text, with their
/// filesystem type names, in the order the table lists them.
pub fn mounts_under(mountinfo: &str, root: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        // id parent major:minor root mount-point options [optional...] - type source super
        let mut fields = line.split(' ');
        let Some(point) = fields.nth(4) else { continue };
        let Some(fs) = line.split(" - ").nth(1).and_then(|t| t.split(' ').next()) else {
            continue;
        };
        let point = PathBuf::from(unescape(point));
        if point.starts_with(root) {
            out.push((point, fs.to_string()));
        }
    }
    out
}

/// The kernel writes space, tab, newline and backslash in mount points as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The current mount table (empty where there is none, as outside Linux).
pub fn read_mountinfo() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()
}

/// The parts of `root` (canonical) that must be polled: the root itself if its
/// filesystem is event-blind, else every event-blind mount point below it. `probe` gives
/// a path's `statfs` type (injected by tests); a path it cannot read is left to events.
pub fn blind_spots(
    root: &Path,
    mountinfo: &str,
    probe: &dyn Fn(&Path) -> io::Result<u64>,
) -> Vec<BlindSpot> {
    let mounts = mounts_under(mountinfo, root);
    let name_for = |p: &Path, kind: &str| {
        mounts
            .iter()
            .rev()
            .find(|(m, _)| m == p)
            .map(|(_, fs)| fs.clone())
            .unwrap_or_else(|| kind.to_string())
    };
    if let Ok(t) = probe(root)
        && let Some(kind) = event_blind_kind(t)
    {
        return vec![BlindSpot {
            rel: String::new(),
            fs: name_for(root, kind),
        }];
    }
    let mut out: Vec<BlindSpot> = Vec::new();
    for (point, _) in &mounts {
        if point == root {
            continue;
        }
        let Ok(rel) = point.strip_prefix(root) else {
            continue;
        };
        let Some(rel) = rel.to_str() else { continue };
        // Inside one that is polled already: covered.
        if out
            .iter()
            .any(|b| rel == b.rel || rel.starts_with(&format!("{}/", b.rel)))
        {
            continue;
        }
        if let Ok(t) = probe(point)
            && let Some(kind) = event_blind_kind(t)
        {
            out.push(BlindSpot {
                rel: rel.to_string(),
                fs: name_for(point, kind),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:25 / /data/root rw shared:5 - ext4 /dev/vdb rw
31 30 0:26 / /data/root/nas rw shared:6 - nfs4 server:/export rw,vers=4.2
32 30 0:27 / /data/root/with\\040space rw shared:7 - cifs //srv/share rw
33 30 0:28 / /data/root/tmp rw shared:8 - tmpfs tmpfs rw
34 31 0:29 / /data/root/nas/inner rw shared:9 - fuse.sshfs host:/x rw
35 22 0:30 / /data/rootless rw shared:10 - nfs4 server:/y rw
";

    fn probe(table: &'static [(&'static str, u64)]) -> impl Fn(&Path) -> io::Result<u64> {
        move |p: &Path| {
            table
                .iter()
                .find(|(q, _)| Path::new(q) == p)
                .map(|(_, t)| *t)
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        }
    }

    #[test]
    fn mount_points_below_the_root_are_found_and_unescaped() {
        let got = mounts_under(TABLE, Path::new("/data/root"));
        let names: Vec<(String, &str)> = got
            .iter()
            .map(|(p, fs)| (p.display().to_string(), fs.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("/data/root".to_string(), "ext4"),
                ("/data/root/nas".to_string(), "nfs4"),
                ("/data/root/with space".to_string(), "cifs"),
                ("/data/root/tmp".to_string(), "tmpfs"),
                ("/data/root/nas/inner".to_string(), "fuse.sshfs"),
            ]
        );
    }

    #[test]
    fn kinds_by_statfs_type() {
        let table = [
            (0x6969, Some("nfs")),
            (0xFF53_4D42, Some("cifs")),
            (0xFE53_4D42, Some("smb2")),
            (0x517B, Some("smb")),
            (0x6573_5546, Some("fuse")),
            (0x0102_1997, Some("9p")),
            (0x00C3_6400, Some("ceph")),
            (0xEF53, None),      // ext4
            (0x0102_1994, None), // tmpfs
            (0x5846_5342, None), // xfs
            (0x9123_683E, None), // btrfs
            (0x794C_7630, None), // overlayfs
        ];
        for (t, want) in table {
            assert_eq!(event_blind_kind(t), want, "{t:#x}");
        }
    }

    #[test]
    fn blind_spots_table() {
        let root = Path::new("/data/root");
        // A local root with an NFS, an SMB, a tmpfs and a FUSE (inside the NFS) mount below.
        let spots = blind_spots(
            root,
            TABLE,
            &probe(&[
                ("/data/root", 0xEF53),
                ("/data/root/nas", 0x6969),
                ("/data/root/with space", 0xFF53_4D42),
                ("/data/root/tmp", 0x0102_1994),
                ("/data/root/nas/inner", 0x6573_5546),
            ]),
        );
        let got: Vec<(&str, &str)> = spots
            .iter()
            .map(|b| (b.rel.as_str(), b.fs.as_str()))
            .collect();
        assert_eq!(got, [("nas", "nfs4"), ("with space", "cifs")]);
        // The root itself on NFS: the whole root, once.
        let spots = blind_spots(
            Path::new("/data/rootless"),
            TABLE,
            &probe(&[("/data/rootless", 0x6969)]),
        );
        assert_eq!(
            spots,
            [BlindSpot {
                rel: String::new(),
                fs: "nfs4".into()
            }]
        );
        assert_eq!(
            spots[0].describe(),
            "the whole root (nfs4: changes made by other machines raise no events)"
        );
        // A root statfs cannot read, and no mounts: left to events.
        assert!(blind_spots(Path::new("/elsewhere"), TABLE, &probe(&[])).is_empty());
        // A 9p root the mount table does not list: named by its kind.
        let spots = blind_spots(
            Path::new("/mnt/host"),
            "",
            &probe(&[("/mnt/host", 0x0102_1997)]),
        );
        assert_eq!(spots[0].fs, "9p");
    }

    #[test]
    fn the_real_root_filesystem_is_probed() {
        let t = statfs_type(Path::new("/")).unwrap();
        assert_ne!(t, 0);
    }
}
