//! A linearizability checker for histories recorded by concurrent clients.
//!
//! The search is Wing & Gong's: repeatedly pick a pending operation whose
//! invocation precedes every pending completion, apply it to a sequential
//! model, and backtrack when a completed operation cannot be placed. Lowe's
//! memoization prunes it: a configuration (set of linearized operations,
//! model state) that was explored once is never explored again.
//!
//! Histories are checked one key at a time. Linearizability is compositional
//! (P-compositionality): a history over many independent keys is
//! linearizable iff each key's sub-history is. Use [`partition_by_key`] to
//! split a recorded history, then [`check`] each part with a one-key model
//! such as [`Register`] or [`Counter`].
//!
//! Operations whose outcome is unknown (timeout, connection error) may have
//! taken effect at any time after their invocation, or never: the checker
//! treats their completion as +infinity and may leave them out.
//!
//! Write unique values (e.g. "client-op") in tests: a lost write of a value
//! nobody read is then dropped before the search, and a stale read points at
//! exactly one write.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Debug};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// One operation as a client saw it. Times are from one monotonic clock
/// (nanoseconds since a common start).
///
/// An operation is *known* when both `complete_ns` and `output` are `Some`.
/// Otherwise its outcome is unknown: it may have taken effect at any time
/// after `invoke_ns`, or never, whatever `complete_ns` says (a server may
/// still apply a request after the client gave up on it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op<I, O> {
    pub client: usize,
    pub invoke_ns: u64,
    pub complete_ns: Option<u64>,
    pub input: I,
    pub output: Option<O>,
}

impl<I, O> Op<I, O> {
    /// True when the client saw the outcome (completion time and output).
    pub fn is_known(&self) -> bool {
        self.complete_ns.is_some() && self.output.is_some()
    }
}

/// A sequential specification of one object.
pub trait Model: Clone + Hash + Eq + Debug {
    type Input: Debug + PartialEq;
    type Output: Debug;

    /// The state after applying `input` with the observed `output`, or None
    /// if that output is impossible from this state.
    fn step(&self, input: &Self::Input, output: &Self::Output) -> Option<Self>;

    /// Every state that applying `input` (with any output) could lead to.
    /// The checker itself covers "it never took effect", so an operation
    /// that cannot change the state (a read) may return an empty list.
    fn step_unknown(&self, input: &Self::Input) -> Vec<Self>;

    /// Optional pruning: true if an op of unknown outcome with this `input`
    /// can be left out of any linearization that contains it, given the
    /// outputs of all the known ops of the history. A write of a value that
    /// no read returned is such an op: nothing can observe the state it
    /// leaves, so dropping it changes nothing any other op sees. Without
    /// this, every lost write would be a candidate at every later point of
    /// the search. The default prunes nothing.
    fn unknown_is_unobservable(input: &Self::Input, known_outputs: &[&Self::Output]) -> bool {
        let _ = (input, known_outputs);
        false
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable {
        /// The longest linearizable prefix found, the state after it, the
        /// operation that could not be placed and the candidates that were.
        explanation: String,
    },
    /// The search budget ran out before an answer.
    Unknown,
}

impl Verdict {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => write!(f, "linearizable"),
            Verdict::NotLinearizable { explanation } => {
                write!(f, "NOT linearizable: {explanation}")
            }
            Verdict::Unknown => write!(f, "unknown (search budget exhausted)"),
        }
    }
}

/// A set of operations (by rank in invocation order).
#[derive(Clone)]
struct Bitset(Vec<u64>);

impl Bitset {
    fn new(n: usize) -> Bitset {
        Bitset(vec![0; n.div_ceil(64)])
    }

    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }

    /// A compact, exact key: operations are ranked by invocation, so the
    /// linearized set is almost always "every rank below `low`" plus a few
    /// stragglers.
    fn key(&self) -> (u32, Box<[u32]>) {
        let first_partial = self
            .0
            .iter()
            .position(|w| *w != u64::MAX)
            .unwrap_or(self.0.len());
        let low = match self.0.get(first_partial) {
            Some(w) => first_partial * 64 + w.trailing_ones() as usize,
            None => first_partial * 64,
        };
        let mut extra = Vec::new();
        for (wi, &word) in self.0.iter().enumerate().skip(low / 64) {
            let mut w = word;
            while w != 0 {
                let bit = w.trailing_zeros() as usize;
                w &= w - 1;
                let i = wi * 64 + bit;
                if i > low {
                    extra.push(i as u32);
                }
            }
        }
        (low as u32, extra.into_boxed_slice())
    }
}

/// The set of linearized ops: known ops (nearly always a prefix in
/// invocation order, so keyed compactly) apart from unknown ones (which can
/// stay out forever, so would spoil that prefix, and which the memo compares
/// by inclusion).
struct Placed {
    known: Bitset,
    unknown: Bitset,
    /// For each rank: is it known, and its index among its kind.
    slot: Vec<(bool, usize)>,
}

impl Placed {
    fn new(known: &[bool]) -> Placed {
        let (mut k, mut u) = (0, 0);
        let slot = known
            .iter()
            .map(|&is_known| {
                let counter = if is_known { &mut k } else { &mut u };
                *counter += 1;
                (is_known, *counter - 1)
            })
            .collect();
        Placed {
            known: Bitset::new(k),
            unknown: Bitset::new(u),
            slot,
        }
    }

    fn set(&mut self, rank: usize) {
        match self.slot[rank] {
            (true, i) => self.known.set(i),
            (false, i) => self.unknown.set(i),
        }
    }

    fn clear(&mut self, rank: usize) {
        match self.slot[rank] {
            (true, i) => self.known.clear(i),
            (false, i) => self.unknown.clear(i),
        }
    }

    /// Records the configuration (this set, `state`) as explored, unless
    /// one that dominates it already was: same known ops, same state, and a
    /// subset of its unknown ops. Whatever the bigger set can still do, the
    /// smaller can too: which ops are candidates depends only on the known
    /// ops linearized, and unknown ops may be left out. With no unknown ops
    /// this is Lowe's memo of (set, state) pairs.
    fn visit<M: Hash + Eq>(&self, state: M, memo: &mut Memo<M>) -> bool {
        let explored = memo.entry((self.known.key(), state)).or_default();
        let mine = &self.unknown.0;
        let subset = |a: &[u64], b: &[u64]| a.iter().zip(b).all(|(x, y)| x & !y == 0);
        if explored.iter().any(|u| subset(u, mine)) {
            return false;
        }
        explored.retain(|u| !subset(mine, u));
        explored.push(mine.clone().into_boxed_slice());
        true
    }
}

/// Explored configurations: for each (known ops, state), the minimal sets of
/// unknown ops it was explored with.
type Memo<M> = HashMap<((u32, Box<[u32]>), M), Vec<Box<[u64]>>>;

/// One event of the history: the invocation or the completion of a known op,
/// or the invocation of an op of unknown outcome (which never completes).
#[derive(Clone, Copy)]
struct Event {
    time: u64,
    is_return: bool,
    /// Rank of the op in invocation order.
    op: usize,
}

/// Where the scan of the current configuration's candidates is.
#[derive(Clone, Copy)]
enum Cursor {
    /// At a node of the list of known ops' events.
    Known(usize),
    /// At a class of unknown ops; `until` is the first pending completion:
    /// only ops invoked before it are candidates.
    Unknown { class: usize, until: usize },
}

/// A choice made by the search, to undo when it leads nowhere.
struct Frame<M> {
    /// Where the op was found: a call node or an unknown class.
    at: Cursor,
    /// The state before it.
    state: M,
    /// Which of its possible successor states was taken.
    alt: usize,
}

/// How many ops of a long prefix the explanation shows.
const SHOW_PREFIX: usize = 12;

/// Checks `history` against the sequential `initial` model.
///
/// `budget` bounds the work: it is the maximum number of search steps (one
/// step considers one candidate at one point of the search). A linearizable
/// history with little concurrency takes a few steps per operation; when the
/// budget runs out the verdict is [`Verdict::Unknown`]. Memory grows with the
/// steps taken (one memo entry per configuration explored).
///
/// An op whose completion equals another's invocation is taken as concurrent
/// with it (only a strictly earlier completion orders two ops).
///
/// Search order and pruning, beyond Wing–Gong–Lowe: at each configuration
/// the pending known ops are tried first, the ops of unknown outcome only
/// after them (they are rarely needed, and guessing them early fills the
/// search with branches that fail only much later). Unknown ops with equal
/// inputs are interchangeable once invoked (each may take effect at any
/// later time, or never), so only the earliest unused one of such a class is
/// ever tried: k lost INCRs cost k choices, not 2^k subsets. The memo
/// prunes by dominance over unknown ops (see `Placed::visit`), and unknown
/// ops the model calls unobservable ([`Model::unknown_is_unobservable`]) are
/// left out from the start.
///
/// Cost: a linearizable history is usually found so in a few steps per op,
/// even with many lost ops. Proving that a history is *not* linearizable
/// means exhausting every order up to the violation; that stays cheap when
/// written values are unique (as tests should make them), and can exceed the
/// budget for long histories with many lost writes of a few repeated values.
pub fn check<M: Model>(initial: M, history: &[Op<M::Input, M::Output>], budget: usize) -> Verdict {
    let n = history.len();
    for (i, op) in history.iter().enumerate() {
        if let (Some(c), true) = (op.complete_ns, op.is_known()) {
            assert!(
                c >= op.invoke_ns,
                "op #{i} completes ({c} ns) before it is invoked ({} ns)",
                op.invoke_ns
            );
        }
    }

    // Rank ops by invocation so that linearized sets are compact.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (history[i].invoke_ns, i));
    let op_of = |rank: usize| &history[order[rank]];

    let mut events = Vec::with_capacity(2 * n);
    for (rank, &i) in order.iter().enumerate() {
        let op = &history[i];
        events.push(Event {
            time: op.invoke_ns,
            is_return: false,
            op: rank,
        });
        if let (Some(c), true) = (op.complete_ns, op.is_known()) {
            events.push(Event {
                time: c,
                is_return: true,
                op: rank,
            });
        }
    }
    // At equal times invocations come first: such ops overlap.
    events.sort_by_key(|e| (e.time, e.is_return, e.op));
    let mut call_pos = vec![0; n];
    let mut return_pos = vec![0; n];
    for (pos, e) in events.iter().enumerate() {
        if e.is_return {
            return_pos[e.op] = pos;
        } else {
            call_pos[e.op] = pos;
        }
    }

    // A circular doubly linked list of the events of known ops not yet
    // linearized, with `head` as its sentinel; lifting an op unlinks both of
    // its events. Nodes are positions in `events`.
    let known_nodes: Vec<usize> = (0..events.len())
        .filter(|&pos| op_of(events[pos].op).is_known())
        .collect();
    let head = events.len();
    let mut next = vec![head; events.len() + 1];
    let mut prev = vec![head; events.len() + 1];
    let mut last = head;
    for &pos in &known_nodes {
        next[last] = pos;
        prev[pos] = last;
        last = pos;
    }
    next[last] = head;
    prev[head] = last;
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, node: usize| {
        let (p, x) = (prev[node], next[node]);
        next[p] = x;
        prev[x] = p;
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, node: usize| {
        let (p, x) = (prev[node], next[node]);
        next[p] = node;
        prev[x] = node;
    };

    // Unknown ops, grouped by input; members in invocation order. Members of
    // a class are always used as a prefix: `used[c]` of them.
    // Unknown ops that cannot matter are left out altogether.
    let known_outputs: Vec<&M::Output> = history
        .iter()
        .filter(|op| op.is_known())
        .filter_map(|op| op.output.as_ref())
        .collect();
    let mut classes: Vec<Vec<usize>> = Vec::new();
    for rank in (0..n).filter(|&r| {
        !op_of(r).is_known() && !M::unknown_is_unobservable(&op_of(r).input, &known_outputs)
    }) {
        match classes
            .iter_mut()
            .find(|c| op_of(c[0]).input == op_of(rank).input)
        {
            Some(class) => class.push(rank),
            None => classes.push(vec![rank]),
        }
    }
    let mut used = vec![0usize; classes.len()];

    let mut known_left = known_nodes.len() / 2;
    let mut linearized = Placed::new(&(0..n).map(|r| op_of(r).is_known()).collect::<Vec<_>>());
    let mut memo: Memo<M> = HashMap::new();
    let mut stack: Vec<Frame<M>> = Vec::new();
    let mut state = initial;
    let mut cursor = Cursor::Known(next[head]);
    let mut first_alt = 0;
    let mut steps = 0usize;

    // For the explanation.
    let mut best_prefix: Vec<usize> = Vec::new();
    let mut best_state = state.clone();
    let mut blocked: Option<(usize, Vec<usize>)> = None;

    loop {
        if known_left == 0 {
            return Verdict::Linearizable;
        }
        steps += 1;
        if steps > budget {
            return Verdict::Unknown;
        }
        // The candidate op at the cursor, if any.
        let candidate = match cursor {
            Cursor::Known(node) => {
                // Some known op is left, and its return stops every scan.
                debug_assert_ne!(node, head);
                if events[node].is_return {
                    cursor = Cursor::Unknown {
                        class: 0,
                        until: node,
                    };
                    first_alt = 0;
                    continue;
                }
                events[node].op
            }
            Cursor::Unknown { class, until } if class < classes.len() => {
                match classes[class].get(used[class]) {
                    Some(&rank) if call_pos[rank] < until => rank,
                    _ => {
                        cursor = Cursor::Unknown {
                            class: class + 1,
                            until,
                        };
                        continue;
                    }
                }
            }
            Cursor::Unknown { until, .. } => {
                // No candidate left: this configuration leads nowhere.
                if blocked.is_none() && stack.len() == best_prefix.len() {
                    blocked = Some((
                        order[events[until].op],
                        candidates(&events, &next, head, until, &classes, &used, &call_pos)
                            .into_iter()
                            .map(|r| order[r])
                            .collect(),
                    ));
                }
                let Some(frame) = stack.pop() else {
                    return Verdict::NotLinearizable {
                        explanation: explain(history, &best_prefix, &best_state, blocked.as_ref()),
                    };
                };
                state = frame.state;
                match frame.at {
                    Cursor::Known(node) => {
                        let rank = events[node].op;
                        linearized.clear(rank);
                        relink(&mut next, &mut prev, return_pos[rank]);
                        relink(&mut next, &mut prev, node);
                        known_left += 1;
                    }
                    Cursor::Unknown { class, .. } => {
                        used[class] -= 1;
                        linearized.clear(classes[class][used[class]]);
                    }
                }
                cursor = frame.at;
                first_alt = frame.alt + 1;
                continue;
            }
        };

        let op = op_of(candidate);
        let successors = match &op.output {
            Some(out) if op.is_known() => state.step(&op.input, out).into_iter().collect(),
            _ => state.step_unknown(&op.input),
        };
        linearized.set(candidate);
        let mut placed = false;
        for (alt, successor) in successors.into_iter().enumerate().skip(first_alt) {
            if linearized.visit(successor.clone(), &mut memo) {
                let before = std::mem::replace(&mut state, successor);
                stack.push(Frame {
                    at: cursor,
                    state: before,
                    alt,
                });
                match cursor {
                    Cursor::Known(node) => {
                        unlink(&mut next, &mut prev, node);
                        unlink(&mut next, &mut prev, return_pos[candidate]);
                        known_left -= 1;
                    }
                    Cursor::Unknown { class, .. } => used[class] += 1,
                }
                placed = true;
                break;
            }
        }
        first_alt = 0;
        if placed {
            if stack.len() > best_prefix.len() {
                // The i-th frame of an unknown class used its i-th member.
                let mut nth = vec![0usize; classes.len()];
                best_prefix = stack
                    .iter()
                    .map(|f| match f.at {
                        Cursor::Known(node) => order[events[node].op],
                        Cursor::Unknown { class, .. } => {
                            nth[class] += 1;
                            order[classes[class][nth[class] - 1]]
                        }
                    })
                    .collect();
                best_state = state.clone();
                blocked = None;
            }
            cursor = Cursor::Known(next[head]);
        } else {
            linearized.clear(candidate);
            cursor = match cursor {
                Cursor::Known(node) => Cursor::Known(next[node]),
                Cursor::Unknown { class, until } => Cursor::Unknown {
                    class: class + 1,
                    until,
                },
            };
        }
    }
}

/// The ops that could go next in a configuration whose first pending
/// completion is `until`.
fn candidates(
    events: &[Event],
    next: &[usize],
    head: usize,
    until: usize,
    classes: &[Vec<usize>],
    used: &[usize],
    call_pos: &[usize],
) -> Vec<usize> {
    let mut out = Vec::new();
    let mut node = next[head];
    while node != until && node != head {
        if !events[node].is_return {
            out.push(events[node].op);
        }
        node = next[node];
    }
    for (class, members) in classes.iter().enumerate() {
        if let Some(&rank) = members.get(used[class]) {
            if call_pos[rank] < until {
                out.push(rank);
            }
        }
    }
    out
}

fn describe<I: Debug, O: Debug>(history: &[Op<I, O>], i: usize) -> String {
    let op = &history[i];
    let complete = match op.complete_ns {
        Some(c) if op.is_known() => c.to_string(),
        _ => "?".to_string(),
    };
    let output = match &op.output {
        Some(o) if op.is_known() => format!("{o:?}"),
        _ => "<unknown>".to_string(),
    };
    format!(
        "#{i} client {} [{} ns .. {complete} ns] {:?} -> {output}",
        op.client, op.invoke_ns, op.input
    )
}

fn explain<M: Model>(
    history: &[Op<M::Input, M::Output>],
    prefix: &[usize],
    state: &M,
    blocked: Option<&(usize, Vec<usize>)>,
) -> String {
    let mut s = format!(
        "no order of the {} ops fits the model and real time.\n\
         Longest linearizable prefix found: {} ops",
        history.len(),
        prefix.len()
    );
    if prefix.len() > SHOW_PREFIX {
        s += &format!(" (last {SHOW_PREFIX} shown)");
    }
    s += ":\n";
    for &i in &prefix[prefix.len().saturating_sub(SHOW_PREFIX)..] {
        s += &format!("  {}\n", describe(history, i));
    }
    s += &format!("state after it: {state:?}\n");
    if let Some((op, candidates)) = blocked {
        s += &format!(
            "op that could not be placed (it completed before any remaining op \
             could be linearized): {}\n",
            describe(history, *op)
        );
        if candidates.is_empty() {
            s += "no other op was pending.\n";
        } else {
            s += "ops that could have gone next (none leads to a linearization):\n";
            for &c in candidates {
                s += &format!("  {}\n", describe(history, c));
            }
        }
    }
    s
}

/// Splits a history over many keys into one history per key.
/// `split` separates the key from the per-key input.
pub fn partition_by_key<K: Ord, I, J, O>(
    history: Vec<Op<I, O>>,
    split: impl Fn(I) -> (K, J),
) -> BTreeMap<K, Vec<Op<J, O>>> {
    let mut parts: BTreeMap<K, Vec<Op<J, O>>> = BTreeMap::new();
    for op in history {
        let (key, input) = split(op.input);
        parts.entry(key).or_default().push(Op {
            client: op.client,
            invoke_ns: op.invoke_ns,
            complete_ns: op.complete_ns,
            input,
            output: op.output,
        });
    }
    parts
}

/// Records a history from many client threads. Clones share the history and
/// the clock.
///
/// ```ignore
/// let t = recorder.invoke(client, RegisterInput::Read);
/// match con.get(key) {
///     Ok(v) => recorder.complete(t, RegisterOutput::Value(v)),
///     Err(_) => recorder.unknown(t),
/// }
/// ```
///
/// An op that is invoked and never completed (its thread died) stays unknown.
pub struct Recorder<I, O> {
    start: Instant,
    ops: Arc<Mutex<Vec<Op<I, O>>>>,
}

impl<I, O> Clone for Recorder<I, O> {
    fn clone(&self) -> Self {
        Recorder {
            start: self.start,
            ops: Arc::clone(&self.ops),
        }
    }
}

impl<I, O> Default for Recorder<I, O> {
    fn default() -> Self {
        Recorder::new()
    }
}

/// A pending op, to be completed once.
#[must_use = "complete the op, or mark its outcome unknown"]
#[derive(Debug)]
pub struct Token(usize);

impl<I, O> Recorder<I, O> {
    pub fn new() -> Self {
        Recorder {
            start: Instant::now(),
            ops: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Nanoseconds since this recorder's start.
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Op<I, O>>> {
        // A client thread that panicked must not hide the history.
        self.ops.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Call just before sending the request.
    pub fn invoke(&self, client: usize, input: I) -> Token {
        let now = self.now_ns();
        let mut ops = self.lock();
        ops.push(Op {
            client,
            invoke_ns: now,
            complete_ns: None,
            input,
            output: None,
        });
        Token(ops.len() - 1)
    }

    /// Call just after the reply arrived.
    pub fn complete(&self, token: Token, output: O) {
        let now = self.now_ns();
        let mut ops = self.lock();
        let op = &mut ops[token.0];
        op.complete_ns = Some(now);
        op.output = Some(output);
    }

    /// The request may or may not have taken effect (timeout, lost
    /// connection, error reply that does not rule it out).
    pub fn unknown(&self, token: Token) {
        let _ = token;
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of everything recorded so far.
    pub fn history(&self) -> Vec<Op<I, O>>
    where
        I: Clone,
        O: Clone,
    {
        self.lock().clone()
    }
}

fn show_bytes(b: &[u8]) -> String {
    format!("b\"{}\"", b.escape_ascii())
}

/// One key under SET/GET: its value, or None when missing.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Register(pub Option<Vec<u8>>);

#[derive(Clone, PartialEq, Eq, Hash)]
pub enum RegisterInput {
    /// SET
    Write(Vec<u8>),
    /// GET
    Read,
}

#[derive(Clone, PartialEq, Eq, Hash)]
pub enum RegisterOutput {
    /// The reply to a write.
    Ok,
    /// The reply to a read: None for a missing key.
    Value(Option<Vec<u8>>),
}

impl Debug for Register {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => write!(f, "Register({})", show_bytes(v)),
            None => write!(f, "Register(missing)"),
        }
    }
}

impl Debug for RegisterInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterInput::Write(v) => write!(f, "Write({})", show_bytes(v)),
            RegisterInput::Read => write!(f, "Read"),
        }
    }
}

impl Debug for RegisterOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterOutput::Ok => write!(f, "Ok"),
            RegisterOutput::Value(Some(v)) => write!(f, "{}", show_bytes(v)),
            RegisterOutput::Value(None) => write!(f, "nil"),
        }
    }
}

impl Model for Register {
    type Input = RegisterInput;
    type Output = RegisterOutput;

    fn step(&self, input: &RegisterInput, output: &RegisterOutput) -> Option<Self> {
        match (input, output) {
            (RegisterInput::Write(v), RegisterOutput::Ok) => Some(Register(Some(v.clone()))),
            (RegisterInput::Read, RegisterOutput::Value(v)) if *v == self.0 => Some(self.clone()),
            _ => None,
        }
    }

    fn step_unknown(&self, input: &RegisterInput) -> Vec<Self> {
        match input {
            RegisterInput::Write(v) => vec![Register(Some(v.clone()))],
            // A read changes nothing: leaving it out is the same.
            RegisterInput::Read => Vec::new(),
        }
    }

    fn unknown_is_unobservable(input: &RegisterInput, known_outputs: &[&RegisterOutput]) -> bool {
        match input {
            RegisterInput::Write(v) => !known_outputs
                .iter()
                .any(|o| matches!(o, RegisterOutput::Value(Some(seen)) if seen == v)),
            RegisterInput::Read => true,
        }
    }
}

/// One key under INCR/GET; a missing key reads 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Counter(pub i64);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CounterInput {
    /// INCR: replies with the new value.
    Incr,
    /// GET
    Read,
}

impl Model for Counter {
    type Input = CounterInput;
    type Output = i64;

    fn step(&self, input: &CounterInput, output: &i64) -> Option<Self> {
        match input {
            CounterInput::Incr => {
                (self.0.checked_add(1) == Some(*output)).then_some(Counter(*output))
            }
            CounterInput::Read => (self.0 == *output).then_some(*self),
        }
    }

    fn step_unknown(&self, input: &CounterInput) -> Vec<Self> {
        match input {
            CounterInput::Incr => self.0.checked_add(1).map(Counter).into_iter().collect(),
            CounterInput::Read => Vec::new(),
        }
    }

    fn unknown_is_unobservable(input: &CounterInput, _: &[&i64]) -> bool {
        *input == CounterInput::Read
    }
}
