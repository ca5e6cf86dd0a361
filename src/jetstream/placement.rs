//! Which shard owns a stream. The placement is recorded in the stream's
//! metadata; with a changed shard count a recorded shard that no longer
//! exists maps onto one that does (and is recorded again there).

/// The shard that opens a stream recorded on `recorded` when the server
/// runs `shards` shards.
pub fn owner(recorded: usize, shards: usize) -> usize {
    if recorded < shards {
        recorded
    } else {
        recorded % shards.max(1)
    }
}

/// The shard for a new stream: the one with the fewest streams (lowest id
/// on ties), so streams spread over every shard.
pub fn choose(counts: &[usize]) -> usize {
    counts
        .iter()
        .enumerate()
        .min_by_key(|(i, c)| (**c, *i))
        .map_or(0, |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_and_remaps() {
        assert_eq!(choose(&[1, 0, 0]), 1);
        assert_eq!(choose(&[0, 0]), 0);
        assert_eq!(owner(3, 4), 3);
        assert_eq!(owner(3, 2), 1);
        assert_eq!(owner(5, 1), 0);
    }
}
