//! Publish/subscribe: the table rows, PUBLISH and PUBSUB parsing. The
//! subscribe family changes the connection's state, so the server runs it
//! (`server::pubsub`); semantics live in `state::pubsub`.

use bytes::Bytes;

use super::{standard_reply, Args, CommandError, CommandSpec, Exec, Flag, KeyPositions};
use crate::state::pubsub::{PubSubOp, PubSubQuery};
use crate::state::{Op, Query};

const PUBLISH: &[Flag] = &[
    Flag::PubSub,
    Flag::Loading,
    Flag::Stale,
    Flag::Fast,
    Flag::MayReplicate,
];
const SUBSCRIBE: &[Flag] = &[Flag::PubSub, Flag::NoScript, Flag::Loading, Flag::Stale];
const INTROSPECT: &[Flag] = &[Flag::PubSub, Flag::Loading, Flag::Stale];

macro_rules! spec {
    ($($row:tt)*) => { command_spec!(PubSub, $($row)*) };
}

macro_rules! local {
    ($($row:tt)*) => { local_spec!(PubSub, $($row)*) };
}

pub const SPECS: &[CommandSpec] = &[
    spec!("publish", 3, PUBLISH, KeyPositions::NONE, "2.0.0", "channel message",
        "Posts a message to a channel through the log: every subscriber on every node receives it, in one order per channel. Returns the number of receiving subscriptions cluster-wide.",
        Exec::Write(parse_publish, standard_reply)),
    spec!("spublish", 3, PUBLISH, KeyPositions::FIRST, "7.0.0", "shardchannel message",
        "Posts a message to a shard channel (one shard holds every shard channel).",
        Exec::Write(parse_spublish, standard_reply)),
    local!("subscribe", -2, SUBSCRIBE, "2.0.0", "channel [channel ...]",
        "Listens for messages published to channels, on any node."),
    local!("psubscribe", -2, SUBSCRIBE, "2.0.0", "pattern [pattern ...]",
        "Listens for messages published to channels that match the patterns."),
    local!("ssubscribe", -2, SUBSCRIBE, "7.0.0", "shardchannel [shardchannel ...]",
        "Listens for messages published to shard channels."),
    local!("unsubscribe", -1, SUBSCRIBE, "2.0.0", "[channel [channel ...]]",
        "Stops listening to the channels, or to all of them."),
    local!("punsubscribe", -1, SUBSCRIBE, "2.0.0", "[pattern [pattern ...]]",
        "Stops listening to the patterns, or to all of them."),
    local!("sunsubscribe", -1, SUBSCRIBE, "7.0.0", "[shardchannel [shardchannel ...]]",
        "Stops listening to the shard channels, or to all of them."),
    local!("pubsub", -2, &[], "2.8.0", "subcommand [argument ...]",
        "A container for pub/sub introspection commands; answers cover the whole cluster.",
        PUBSUB_SUBCOMMANDS),
];

const PUBSUB_SUBCOMMANDS: &[CommandSpec] = &[
    spec!(
        "pubsub|channels",
        -2,
        INTROSPECT,
        KeyPositions::NONE,
        "2.8.0",
        "[pattern]",
        "Returns the active channels (with at least one subscriber anywhere in the cluster).",
        Exec::Read(parse_channels, standard_reply)
    ),
    spec!(
        "pubsub|numsub",
        -2,
        INTROSPECT,
        KeyPositions::NONE,
        "2.8.0",
        "[channel [channel ...]]",
        "Returns the number of subscribers of each channel, cluster-wide.",
        Exec::Read(parse_numsub, standard_reply)
    ),
    spec!(
        "pubsub|numpat",
        2,
        INTROSPECT,
        KeyPositions::NONE,
        "2.8.0",
        "",
        "Returns the number of patterns subscribed to, cluster-wide.",
        Exec::Read(parse_numpat, standard_reply)
    ),
    spec!(
        "pubsub|shardchannels",
        -2,
        INTROSPECT,
        KeyPositions::NONE,
        "7.0.0",
        "[pattern]",
        "Returns the active shard channels.",
        Exec::Read(parse_shardchannels, standard_reply)
    ),
    spec!(
        "pubsub|shardnumsub",
        -2,
        INTROSPECT,
        KeyPositions::NONE,
        "7.0.0",
        "[shardchannel [shardchannel ...]]",
        "Returns the number of subscribers of each shard channel, cluster-wide.",
        Exec::Read(parse_shardnumsub, standard_reply)
    ),
];

fn publish(argv: &[Bytes], shard: bool) -> Result<Op, CommandError> {
    Ok(Op::PubSub(PubSubOp::Publish {
        shard,
        channel: argv[1].clone(),
        message: argv[2].clone(),
    }))
}

fn parse_publish(argv: &[Bytes]) -> Result<Op, CommandError> {
    publish(argv, false)
}

fn parse_spublish(argv: &[Bytes]) -> Result<Op, CommandError> {
    publish(argv, true)
}

fn channels(argv: &[Bytes], shard: bool) -> Result<Query, CommandError> {
    let mut args = Args::new(&argv[1..]);
    let pattern = (!args.is_empty()).then(|| args.bytes()).transpose()?;
    args.finish()?;
    Ok(Query::PubSub(PubSubQuery::Channels { shard, pattern }))
}

fn parse_channels(argv: &[Bytes]) -> Result<Query, CommandError> {
    channels(argv, false)
}

fn parse_shardchannels(argv: &[Bytes]) -> Result<Query, CommandError> {
    channels(argv, true)
}

fn numsub(argv: &[Bytes], shard: bool) -> Result<Query, CommandError> {
    Ok(Query::PubSub(PubSubQuery::NumSub {
        shard,
        channels: argv[2..].to_vec(),
    }))
}

fn parse_numsub(argv: &[Bytes]) -> Result<Query, CommandError> {
    numsub(argv, false)
}

fn parse_shardnumsub(argv: &[Bytes]) -> Result<Query, CommandError> {
    numsub(argv, true)
}

fn parse_numpat(_argv: &[Bytes]) -> Result<Query, CommandError> {
    Ok(Query::PubSub(PubSubQuery::NumPat))
}
