//! Reading a whole map in a few system calls (`BPF_MAP_LOOKUP_BATCH`, Linux >= 5.6)
//! instead of one or two per entry, as aya's iterator and `get` do: a restart with a
//! million bans in the maps spent about 2 of its 3.6 seconds listing them that way, and
//! reading the 131k port slots of `jail_ports` one by one was most of every start. aya 0.16 has no batch operations, so this is written here, as the agent's one
//! raw `bpf(2)` call; a kernel without it gets the iterator.

use std::{
    io,
    mem::size_of,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::{Pod, maps::MapData};

/// `BPF_MAP_LOOKUP_BATCH` in `enum bpf_cmd` (uapi/linux/bpf.h).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// The kernel's ENOTSUPP (not in libc): an operation the map type lacks.
const ENOTSUPP: i32 = 524;
/// Entries asked for per call. A hash map answers bucket by bucket and refuses (ENOSPC)
/// a bucket larger than this, which cannot happen at this size.
const CHUNK: usize = 8192;

/// The `batch` member of `union bpf_attr`: the kernel reads only the bytes passed.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Every entry of the hash or array map `map`, or `None` when the kernel has no batch
/// lookup for it (the caller iterates instead).
pub(super) fn entries<K: Pod, V: Pod>(map: &MapData) -> io::Result<Option<Vec<(K, V)>>> {
    let fd = map.fd().as_fd().as_raw_fd();
    let (key_size, value_size) = (size_of::<K>(), size_of::<V>());
    let mut keys = vec![0u8; CHUNK * key_size];
    let mut values = vec![0u8; CHUNK * value_size];
    // The position between calls: a bucket index for hash maps, an index for arrays (4
    // bytes); room for 8.
    let (mut position, mut next) = ([0u8; 8], [0u8; 8]);
    let mut out = Vec::new();
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { position.as_ptr() as u64 },
            out_batch: next.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: CHUNK as u32,
            map_fd: u32::try_from(fd).unwrap_or(u32::MAX),
            ..BatchAttr::default()
        };
        // SAFETY: `attr` is a valid `bpf_attr` prefix for this command, its pointers
        // point at buffers of `count` keys and values (and 8 bytes of position) that
        // outlive the call, and the kernel writes no more than that.
        let result = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &raw mut attr,
                size_of::<BatchAttr>() as u32,
            )
        };
        let error = (result < 0).then(io::Error::last_os_error);
        // The kernel says in `count` how many entries it wrote, even at the end.
        let got = (attr.count as usize).min(CHUNK);
        for i in 0..got {
            // SAFETY: entry `i` lies inside the buffers (`got` <= CHUNK), and `K` and `V`
            // are `Pod`: any bytes the kernel wrote are valid values of them.
            let entry = unsafe {
                (
                    std::ptr::read_unaligned(keys.as_ptr().add(i * key_size).cast::<K>()),
                    std::ptr::read_unaligned(values.as_ptr().add(i * value_size).cast::<V>()),
                )
            };
            out.push(entry);
        }
        let Some(error) = error else {
            position = next;
            first = false;
            continue;
        };
        match error.raw_os_error() {
            Some(libc::ENOENT) => return Ok(Some(out)),
            Some(libc::EINVAL | libc::EOPNOTSUPP | ENOTSUPP) if first => return Ok(None),
            _ => return Err(error),
        }
    }
}
