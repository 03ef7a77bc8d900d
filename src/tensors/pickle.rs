//! A restricted reader of Python pickles (protocols 2 to 5, the binary opcodes `torch.save`
//! writes): it builds a tree of plain values and never runs anything. A GLOBAL is kept as
//! its name; a call (REDUCE, NEWOBJ) as an [`Value::Object`] holding the callee's name and
//! its arguments, for the caller to interpret (a tensor is the call
//! `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`). The one call
//! acted on is `collections.OrderedDict()`, which becomes a dictionary, so that the items
//! SETITEMS adds to it land in order.
//!
//! The memo: Python's unpickler shares one object between the stack and the memo, and
//! pickle writes a value that is there twice (`{"a": d, "b": d}`, a tied submodule) once,
//! memoized while still empty, then filled, then read back by GET. Here a GET copies the
//! entry's value as it is when read: from the stack while it is still there, else as it was
//! when it left the stack. A value may not change once copied (a value that contains
//! itself), nor may a copy (in Python the change would show in every copy): such a pickle is
//! refused. Only entries that some GET reads keep a value.
//!
//! Input is untrusted: every length is checked against the bytes left, and every value the
//! parser builds (pushed on the stack, copied into or out of the memo, a key indexed in a
//! dictionary) is charged against one [`Budget`] of memory before it is built, so a few
//! bytes of pickle can never make gigabytes of values. Nesting is bounded too (a deep tree
//! would overflow the stack when it is dropped). A malformed pickle is an error, never a
//! panic.
use std::collections::{HashMap, HashSet};

/// Memory that reading a file's pickles may take: the pickle bytes held and every value
/// built from them, as estimated by [`Parser`]'s charges. Shared by the pickles of one file.
#[derive(Debug)]
pub struct Budget {
    left: u64,
    total: u64,
}

impl Budget {
    pub fn new(bytes: u64) -> Budget {
        Budget { left: bytes, total: bytes }
    }

    /// Takes `n` bytes from the budget, or says that the file needs more than it allows.
    pub fn charge(&mut self, n: u64) -> Result<(), String> {
        self.left = self.left.checked_sub(n).ok_or_else(|| format!("it describes more values than the {} MiB nnmnist reads from such a file", self.total >> 20))?;
        Ok(())
    }
}

/// A value of the pickle.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer beyond i64 (LONG1/LONG4), not kept.
    BigInt,
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Dict),
    /// A global (a class or function), by its dotted name `module.name`: never imported.
    Global(String),
    /// A persistent id (BINPERSID): in `torch.save`'s files, a storage reference.
    Persistent(Box<Value>),
    /// The result of calling `callee` with `args` (REDUCE, NEWOBJ), which is not run; `state`
    /// is what BUILD gave it (an object's `__dict__`: a module's `_parameters`, `_modules`...);
    /// `items` what SETITEMS (keys and values in turn) or APPENDS gave it, the contents of a
    /// dict's or a list's subclass; `new` that it is an instance of the class `callee` made
    /// without running its code (NEWOBJ: `callee.__new__(callee, *args)`), not the result of
    /// a call (REDUCE).
    Object { callee: String, args: Vec<Value>, state: Option<Box<Value>>, items: Vec<Value>, new: bool },
}

/// A dictionary in insertion order. A key set twice keeps its first place and its last
/// value, as in Python.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dict {
    pub items: Vec<(Value, Value)>,
    index: HashMap<String, usize>,
}

impl Dict {
    pub fn insert(&mut self, key: Value, value: Value) {
        if let Value::Str(s) = &key {
            if let Some(&i) = self.index.get(s) {
                self.items[i].1 = value;
                return;
            }
            self.index.insert(s.clone(), self.items.len());
        }
        self.items.push((key, value));
    }

    /// The value under the string key `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.items[i].1)
    }
}

/// An entry of the stack: a value (with its nesting depth and node count, and what the memo
/// knows of it) or a MARK.
enum Slot {
    Mark,
    V(Value, Size, Tag),
}

/// How a value on the stack relates to the memo.
#[derive(Clone, Copy, Default)]
struct Tag {
    /// The [`Watch`] of a value that memo entries read later name (0: none).
    watch: u32,
    /// A copy of a memo entry (GET): in Python the same object as the entry, so it may not
    /// be changed (the change would show in every other copy).
    shared: bool,
}

/// A value on the stack that memo entries name, which later GETs read: Python shares one
/// object between the stack and the memo, so the entries must show the value as it is when
/// they are read, not as it was when it was memoized (a dictionary is memoized empty, then
/// filled).
struct Watch {
    /// Its place on the stack (fixed while it is there: only the top moves).
    index: usize,
    /// How many times it has been changed (SETITEMS, APPENDS, BUILD).
    version: u32,
    /// A GET has copied it while it was still on the stack: from then on it may not change.
    copied: bool,
    /// The memo entries that name it.
    keys: Vec<u32>,
}

/// A memo entry that a GET reads.
struct Memo {
    /// The value as last copied from its source, and the source's version then.
    snapshot: Option<(Value, Size)>,
    version: u32,
    /// The [`Watch`] of its source while that is on the stack (0 once it has left it).
    source: u32,
}

/// How deep a value nests, and the memory it holds (itself and its children), both kept
/// bounded: a deep nesting would overflow the stack when the tree is dropped, and a memo
/// entry used many times is copied each time (Python shares it), so each copy is charged.
#[derive(Clone, Copy, Default)]
struct Size {
    depth: u32,
    bytes: u64,
}

/// What one value costs beyond its payload: its stack slot (the largest of the value
/// variants with the slot's own fields), rounded up.
const NODE: u64 = 128;

impl Size {
    fn leaf(payload: u64) -> Size {
        Size { depth: 1, bytes: NODE + payload }
    }

    /// `self` with `child` nested inside it.
    fn holding(self, child: Size) -> Size {
        Size { depth: self.depth.max(child.depth + 1), bytes: self.bytes.saturating_add(child.bytes) }
    }
}

/// The deepest nesting read (a state_dict nests a few levels; a whole module about three per
/// submodule level).
const MAX_DEPTH: u32 = 1000;

/// Reads one pickle (up to STOP), charging what it builds to `budget`.
pub fn parse(bytes: &[u8], budget: &mut Budget) -> Result<Value, String> {
    Ok(parse_prefix(bytes, budget)?.0)
}

/// Reads the pickle at the start of `bytes`: its value and the bytes it took.
pub fn parse_prefix(bytes: &[u8], budget: &mut Budget) -> Result<(Value, usize), String> {
    let gotten = gotten_keys(bytes, budget)?;
    let mut parser = Parser { ops: Ops { bytes, pos: 0 }, stack: Vec::new(), memo: HashMap::new(), gotten, watches: HashMap::new(), watched: 0, budget };
    let v = parser.run()?;
    Ok((v, parser.ops.pos))
}

/// The memo keys that the pickle's GETs read (up to its STOP, or to where it cannot be
/// read): only those entries need to follow their values. Each key kept is charged.
fn gotten_keys(bytes: &[u8], budget: &mut Budget) -> Result<HashSet<u32>, String> {
    let mut ops = Ops { bytes, pos: 0 };
    let mut keys = HashSet::new();
    loop {
        match ops.next() {
            Ok((at, Op::Get(k))) => {
                if keys.insert(k) {
                    budget.charge(16).map_err(|e| format!("{e} (at byte {at} of its pickle)"))?;
                }
            }
            Ok((_, Op::Stop)) | Err(_) => return Ok(keys),
            Ok(_) => {}
        }
    }
}

/// One opcode with its argument.
enum Op<'a> {
    /// PROTO, FRAME: nothing to do (a frame's bytes follow inline).
    Skip,
    Stop,
    Mark,
    EmptyDict,
    EmptyList,
    EmptyTuple,
    /// EMPTY_SET, kept as a list.
    EmptySet,
    None,
    Bool(bool),
    Int(i64),
    /// An integer beyond i64.
    BigInt,
    Float(f64),
    Str(&'a str),
    Bytes(&'a [u8]),
    Put(u32),
    Memoize,
    Get(u32),
    Global(String),
    StackGlobal,
    Tuple,
    /// TUPLE1, TUPLE2, TUPLE3.
    TupleN(usize),
    List,
    Dict,
    PersId,
    Reduce,
    NewObj,
    NewObjEx,
    Build,
    SetItem,
    SetItems,
    Append,
    /// APPENDS, and ADDITEMS (a set's).
    Appends,
    FrozenSet,
    Pop,
}

/// The opcodes of a pickle, decoded one by one: every length checked against the bytes left.
struct Ops<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Ops<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| format!("cut short at byte {} (wanted {n} more bytes)", self.pos))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }

    fn len(&mut self, n: u64) -> Result<usize, String> {
        usize::try_from(n).ok().filter(|&n| n <= self.bytes.len() - self.pos).ok_or_else(|| format!("a length of {n} bytes at byte {} runs past the end", self.pos))
    }

    fn string(&mut self, n: u64) -> Result<Op<'a>, String> {
        let n = self.len(n)?;
        let at = self.pos;
        let s = self.take(n)?;
        Ok(Op::Str(std::str::from_utf8(s).map_err(|_| format!("a string at byte {at} is not UTF-8"))?))
    }

    fn line(&mut self) -> Result<&'a str, String> {
        let rest = &self.bytes[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or("a GLOBAL name without its end of line")?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| "a GLOBAL name that is not UTF-8")?;
        self.pos += n + 1;
        Ok(s)
    }

    /// The next opcode, and the byte it starts at.
    fn next(&mut self) -> Result<(usize, Op<'a>), String> {
        let at = self.pos;
        let op = self.u8()?;
        let decoded = match op {
            0x80 => {
                self.u8()?; // PROTO n
                Op::Skip
            }
            0x95 => {
                self.u64()?; // FRAME length
                Op::Skip
            }
            b'.' => Op::Stop,
            b'(' => Op::Mark,
            b'}' => Op::EmptyDict,
            b']' => Op::EmptyList,
            b')' => Op::EmptyTuple,
            0x8f => Op::EmptySet,
            b'N' => Op::None,
            0x88 => Op::Bool(true),
            0x89 => Op::Bool(false),
            b'J' => Op::Int(i32::from_le_bytes(self.take(4)?.try_into().unwrap()) as i64),
            b'K' => Op::Int(self.u8()? as i64),
            b'M' => Op::Int(u16::from_le_bytes(self.take(2)?.try_into().unwrap()) as i64),
            0x8a | 0x8b => {
                let n = if op == 0x8a { self.u8()? as u64 } else { self.u32()? as u64 };
                let n = self.len(n)?;
                let b = self.take(n)?;
                if n == 0 {
                    Op::Int(0)
                } else if n <= 8 {
                    let fill = if b[n - 1] & 0x80 != 0 { 0xff } else { 0 };
                    let mut w = [fill; 8];
                    w[..n].copy_from_slice(b);
                    Op::Int(i64::from_le_bytes(w))
                } else {
                    Op::BigInt
                }
            }
            b'G' => Op::Float(f64::from_be_bytes(self.take(8)?.try_into().unwrap())),
            b'X' => {
                let n = self.u32()? as u64;
                self.string(n)?
            }
            0x8c => {
                let n = self.u8()? as u64;
                self.string(n)?
            }
            0x8d => {
                let n = self.u64()?;
                self.string(n)?
            }
            b'B' | b'C' | 0x8e => {
                let n = match op {
                    b'B' => self.u32()? as u64,
                    b'C' => self.u8()? as u64,
                    _ => self.u64()?,
                };
                let n = self.len(n)?;
                Op::Bytes(self.take(n)?)
            }
            b'q' => Op::Put(self.u8()? as u32),
            b'r' => Op::Put(self.u32()?),
            0x94 => Op::Memoize,
            b'h' => Op::Get(self.u8()? as u32),
            b'j' => Op::Get(self.u32()?),
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                Op::Global(format!("{module}.{name}"))
            }
            0x93 => Op::StackGlobal,
            b't' => Op::Tuple,
            0x85..=0x87 => Op::TupleN((op - 0x84) as usize),
            b'l' => Op::List,
            b'd' => Op::Dict,
            b'Q' => Op::PersId,
            b'R' => Op::Reduce,
            0x81 => Op::NewObj,
            0x92 => Op::NewObjEx,
            b'b' => Op::Build,
            b's' => Op::SetItem,
            b'u' => Op::SetItems,
            b'a' => Op::Append,
            b'e' | 0x90 => Op::Appends,
            0x91 => Op::FrozenSet,
            b'0' => Op::Pop,
            other => return Err(format!("unsupported pickle opcode 0x{other:02x} at byte {at}")),
        };
        Ok((at, decoded))
    }
}

struct Parser<'a, 'b> {
    ops: Ops<'a>,
    stack: Vec<Slot>,
    /// Every memo key set (MEMOIZE numbers its entry by their count); None for an entry no
    /// GET reads.
    memo: HashMap<u32, Option<Memo>>,
    gotten: HashSet<u32>,
    watches: HashMap<u32, Watch>,
    /// The last [`Watch`] number given.
    watched: u32,
    budget: &'b mut Budget,
}

impl Parser<'_, '_> {
    /// Charges `n` bytes, naming the place in the pickle when the budget runs out.
    fn charge(&mut self, n: u64) -> Result<(), String> {
        let at = self.ops.pos;
        self.budget.charge(n).map_err(|e| format!("{e} (at byte {at} of its pickle)"))
    }

    /// Pushes a leaf value.
    fn push(&mut self, v: Value) -> Result<(), String> {
        let payload = match &v {
            Value::Str(s) | Value::Global(s) => s.len() as u64,
            Value::Bytes(b) => b.len() as u64,
            _ => 0,
        };
        let size = Size::leaf(payload);
        self.charge(size.bytes)?;
        self.stack.push(Slot::V(v, size, Tag::default()));
        Ok(())
    }

    /// Pushes a value built from children of size `inner` (their sizes combined).
    fn push_holding(&mut self, v: Value, inner: Size) -> Result<(), String> {
        self.charge(NODE)?;
        let size = Size::leaf(0).holding(inner);
        if size.depth > MAX_DEPTH {
            return Err(format!("values nest deeper than {MAX_DEPTH} levels (byte {})", self.ops.pos));
        }
        self.stack.push(Slot::V(v, size, Tag::default()));
        Ok(())
    }

    /// A value leaving the stack (into another value, or dropped): the memo entries that
    /// name it take it as it is now, since it cannot change any more.
    fn finish(&mut self, v: Value, size: Size, tag: Tag) -> Result<(Value, Size), String> {
        if let Some(w) = self.watches.remove(&tag.watch) {
            for k in w.keys {
                let stale = match self.memo.get(&k) {
                    Some(Some(m)) if m.source == tag.watch => m.snapshot.is_none() || m.version != w.version,
                    _ => continue,
                };
                if stale {
                    self.charge(size.bytes)?;
                }
                if let Some(Some(m)) = self.memo.get_mut(&k) {
                    if stale {
                        m.snapshot = Some((v.clone(), size));
                        m.version = w.version;
                    }
                    m.source = 0;
                }
            }
        }
        Ok((v, size))
    }

    fn pop_sized(&mut self) -> Result<(Value, Size), String> {
        match self.stack.pop() {
            Some(Slot::V(v, s, tag)) => self.finish(v, s, tag),
            Some(Slot::Mark) => Err(format!("a MARK where a value was expected (byte {})", self.ops.pos)),
            None => Err(format!("the stack is empty where a value was expected (byte {})", self.ops.pos)),
        }
    }

    fn pop(&mut self) -> Result<Value, String> {
        Ok(self.pop_sized()?.0)
    }

    /// The top value, about to be changed, and its size grown by `child` (a value about to
    /// be put inside it). A value that the memo shares with a copy already made cannot
    /// change: the copy would not show it.
    fn top_holding(&mut self, child: Size) -> Result<&mut Value, String> {
        let pos = self.ops.pos;
        match self.stack.last_mut() {
            Some(Slot::V(v, s, tag)) => {
                let watch = self.watches.get_mut(&tag.watch);
                if tag.shared || watch.as_ref().is_some_and(|w| w.copied) {
                    return Err(format!("a value changes after the pickle has shared it (a value that contains itself?), which nnmnist does not follow (byte {pos})"));
                }
                if let Some(w) = watch {
                    w.version += 1;
                }
                *s = s.holding(child);
                if s.depth > MAX_DEPTH {
                    return Err(format!("values nest deeper than {MAX_DEPTH} levels (byte {pos})"));
                }
                Ok(v)
            }
            _ => Err(format!("no value on the stack at byte {pos}")),
        }
    }

    /// The values above the topmost MARK, which is removed, and their sizes combined.
    fn pop_mark(&mut self) -> Result<(Vec<Value>, Size), String> {
        let at = self.stack.iter().rposition(|s| matches!(s, Slot::Mark)).ok_or_else(|| format!("no MARK on the stack (byte {})", self.ops.pos))?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        let mut inner = Size { depth: 0, bytes: 0 };
        let mut values = Vec::with_capacity(items.len());
        for slot in items {
            let Slot::V(v, size, tag) = slot else { unreachable!("only the topmost MARK is above") };
            let (v, size) = self.finish(v, size, tag)?;
            inner = inner.holding(size);
            values.push(v);
        }
        Ok((values, Size { depth: inner.depth.saturating_sub(1), bytes: inner.bytes }))
    }

    /// MEMOIZE/PUT: the top value under key `key`. Only an entry that a GET reads keeps the
    /// value, which it copies when it is read (see [`Watch`]).
    fn memo_put(&mut self, key: u32) -> Result<(), String> {
        self.charge(NODE)?;
        let pos = self.ops.pos;
        let index = self.stack.len().wrapping_sub(1);
        let Some(Slot::V(_, _, tag)) = self.stack.last_mut() else { return Err(format!("no value on the stack to memoize at byte {pos}")) };
        if !self.gotten.contains(&key) {
            self.memo.insert(key, None);
            return Ok(());
        }
        if tag.watch == 0 {
            self.watched += 1;
            tag.watch = self.watched;
            self.watches.insert(self.watched, Watch { index, version: 0, copied: false, keys: Vec::new() });
        }
        let source = tag.watch;
        if let Some(w) = self.watches.get_mut(&source) {
            w.keys.push(key);
        }
        self.memo.insert(key, Some(Memo { snapshot: None, version: 0, source }));
        Ok(())
    }

    /// GET: a copy of a memo entry as its value is now, charged before it is made.
    fn memo_get(&mut self, key: u32) -> Result<(), String> {
        let pos = self.ops.pos;
        let lost = || format!("memo entry {key} lost its value (byte {pos})");
        let (source, version, has_snapshot) = match self.memo.get(&key) {
            Some(Some(m)) => (m.source, m.version, m.snapshot.is_some()),
            _ => return Err(format!("memo entry {key} is used before it is set (byte {pos})")),
        };
        if source != 0 {
            // Its value is still on the stack: copied as it is now, and frozen from now on.
            let w = self.watches.get_mut(&source).ok_or_else(lost)?;
            w.copied = true;
            let (index, now) = (w.index, w.version);
            if !has_snapshot || version != now {
                let Some(Slot::V(_, size, _)) = self.stack.get(index) else { return Err(lost()) };
                let size = *size;
                self.charge(size.bytes)?;
                let Some(Slot::V(v, _, _)) = self.stack.get(index) else { return Err(lost()) };
                let snapshot = Some((v.clone(), size));
                if let Some(Some(m)) = self.memo.get_mut(&key) {
                    m.snapshot = snapshot;
                    m.version = now;
                }
            }
        }
        let Some(Some(Memo { snapshot: Some((_, size)), .. })) = self.memo.get(&key) else { return Err(lost()) };
        let size = *size;
        self.charge(size.bytes)?;
        let Some(Some(Memo { snapshot: Some((v, _)), .. })) = self.memo.get(&key) else { return Err(lost()) };
        let v = v.clone();
        self.stack.push(Slot::V(v, size, Tag { watch: 0, shared: true }));
        Ok(())
    }

    fn call(&mut self, callee: Value, args: Vec<Value>, inner: Size, new: bool) -> Result<(), String> {
        let pos = self.ops.pos;
        let callee = match callee {
            Value::Global(g) => g,
            // The legacy format pickles a module's class as the persistent id
            // ("module", class, source file, source).
            Value::Persistent(id) => match *id {
                Value::Tuple(t) if matches!(t.first(), Some(Value::Str(s)) if s == "module") => match t.into_iter().nth(1) {
                    Some(Value::Global(g)) => g,
                    _ => return Err(format!("a module persistent id without its class (byte {pos})")),
                },
                _ => return Err(format!("a call of a persistent id that is no module class (byte {pos})")),
            },
            _ => return Err(format!("a call of something that is no global (byte {pos})")),
        };
        // A defaultdict is a dictionary: its default factory (the argument) plays no part.
        if (callee == "collections.OrderedDict" && args.is_empty()) || callee == "collections.defaultdict" {
            self.push(Value::Dict(Dict::default()))
        } else {
            self.push_holding(Value::Object { callee, args, state: None, items: Vec::new(), new }, inner)
        }
    }

    fn set_items(&mut self, items: Vec<Value>, inner: Size) -> Result<(), String> {
        if !items.len().is_multiple_of(2) {
            return Err("SETITEMS with an odd number of values".into());
        }
        // The dictionary's index holds a copy of each string key.
        let keys: u64 = items.iter().step_by(2).map(|k| if let Value::Str(s) = k { NODE + s.len() as u64 } else { 0 }).sum();
        self.charge(keys)?;
        match self.top_holding(inner)? {
            Value::Dict(d) => {
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    d.insert(k, v);
                }
                Ok(())
            }
            // A subclass of dict: its items kept with it, as they come.
            Value::Object { items: kept, .. } => {
                kept.extend(items);
                Ok(())
            }
            _ => Err("SETITEM(S) on a value that is neither a dictionary nor an object".into()),
        }
    }

    fn run(&mut self) -> Result<Value, String> {
        loop {
            let (at, op) = self.ops.next()?;
            match op {
                Op::Skip => {}
                Op::Stop => return self.pop(),
                Op::Mark => {
                    self.charge(NODE)?;
                    self.stack.push(Slot::Mark)
                }
                Op::EmptyDict => self.push(Value::Dict(Dict::default()))?,
                Op::EmptyList | Op::EmptySet => self.push(Value::List(Vec::new()))?,
                Op::EmptyTuple => self.push(Value::Tuple(Vec::new()))?,
                Op::None => self.push(Value::None)?,
                Op::Bool(b) => self.push(Value::Bool(b))?,
                Op::Int(i) => self.push(Value::Int(i))?,
                Op::BigInt => self.push(Value::BigInt)?,
                Op::Float(f) => self.push(Value::Float(f))?,
                Op::Str(s) => self.push(Value::Str(s.to_string()))?,
                Op::Bytes(b) => self.push(Value::Bytes(b.to_vec()))?,
                Op::Put(k) => self.memo_put(k)?,
                Op::Memoize => {
                    let k = self.memo.len() as u32;
                    self.memo_put(k)?
                }
                Op::Get(k) => self.memo_get(k)?,
                Op::Global(g) => self.push(Value::Global(g))?,
                Op::StackGlobal => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.push(Value::Global(format!("{m}.{n}")))?,
                        _ => return Err(format!("STACK_GLOBAL without two strings (byte {at})")),
                    }
                }
                Op::Tuple => {
                    let (items, inner) = self.pop_mark()?;
                    self.push_holding(Value::Tuple(items), inner)?
                }
                Op::TupleN(n) => {
                    let (mut items, mut inner) = (Vec::with_capacity(n), Size { depth: 0, bytes: 0 });
                    for _ in 0..n {
                        let (v, size) = self.pop_sized()?;
                        items.push(v);
                        inner = inner.holding(size);
                    }
                    items.reverse();
                    inner.depth = inner.depth.saturating_sub(1);
                    self.push_holding(Value::Tuple(items), inner)?
                }
                Op::List | Op::FrozenSet => {
                    let (items, inner) = self.pop_mark()?;
                    self.push_holding(Value::List(items), inner)?
                }
                Op::Dict => {
                    let (items, inner) = self.pop_mark()?;
                    self.push(Value::Dict(Dict::default()))?;
                    self.set_items(items, inner)?
                }
                Op::PersId => {
                    let (id, size) = self.pop_sized()?;
                    self.push_holding(Value::Persistent(Box::new(id)), size)?
                }
                Op::Reduce | Op::NewObj | Op::NewObjEx => {
                    if matches!(op, Op::NewObjEx) {
                        self.pop()?; // NEWOBJ_EX's keyword arguments: not kept
                    }
                    let (args, size) = self.pop_sized()?;
                    let callee = self.pop()?;
                    let Value::Tuple(args) = args else { return Err(format!("a call (REDUCE, NEWOBJ) without an argument tuple (byte {at})")) };
                    self.call(callee, args, Size { depth: size.depth.saturating_sub(1), bytes: size.bytes }, !matches!(op, Op::Reduce))?
                }
                Op::Build => {
                    let (state, size) = self.pop_sized()?;
                    // An OrderedDict's own attributes (a state_dict's `_metadata`): not kept,
                    // and the dictionary unchanged.
                    if matches!(self.stack.last(), Some(Slot::V(Value::Dict(_), _, _))) {
                        continue;
                    }
                    match self.top_holding(size)? {
                        Value::Object { state: s, .. } => *s = Some(Box::new(state)),
                        _ => return Err(format!("BUILD on a value that is no object (byte {at})")),
                    }
                }
                Op::SetItem => {
                    let (v, vs) = self.pop_sized()?;
                    let (k, ks) = self.pop_sized()?;
                    self.set_items(vec![k, v], vs.holding(ks))?
                }
                Op::SetItems => {
                    let (items, inner) = self.pop_mark()?;
                    self.set_items(items, inner)?
                }
                Op::Append | Op::Appends => {
                    let (items, inner) = if matches!(op, Op::Append) {
                        let (v, size) = self.pop_sized()?;
                        (vec![v], size)
                    } else {
                        self.pop_mark()?
                    };
                    match self.top_holding(inner)? {
                        Value::List(l) | Value::Object { items: l, .. } => l.extend(items),
                        _ => return Err(format!("APPEND(S) on a value that is neither a list nor an object (byte {at})")),
                    }
                }
                Op::Pop => {
                    self.pop()?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_(bytes: &[u8]) -> Result<Value, String> {
        parse(bytes, &mut Budget::new(1 << 20))
    }

    #[test]
    fn truncated_and_garbage_pickles_are_errors() {
        assert!(parse_(b"").is_err());
        assert!(parse_(b"\x80\x02}q\x00(X\xff\xff\xff\xff").is_err());
        assert!(parse_(b"\x80\x02h\x05.").is_err());
        assert!(parse_(b"\x80\x02u.").is_err());
    }

    #[test]
    fn deep_nesting_and_memo_blowups_are_errors() {
        // 5000 nested 1-tuples: ) then TUPLE1 x 5000.
        let mut deep = b"\x80\x02)".to_vec();
        deep.extend(std::iter::repeat_n(0x85, 5000));
        deep.push(b'.');
        assert!(parse_(&deep).unwrap_err().contains("nest deeper"));
        // A list doubled 60 times through the memo: ]q\0 then (h\0 h\0 l q\0) x 60.
        let mut bomb = b"\x80\x02]q\x00".to_vec();
        for _ in 0..60 {
            bomb.extend(b"0(h\x00h\x00lq\x00");
        }
        bomb.push(b'.');
        assert!(parse_(&bomb).unwrap_err().contains("more values than the 1 MiB"));
        // Memo puts that no GET reads copy nothing, and are charged all the same: a list of
        // 3000 Nones memoized 3000 times costs 3000 entries, a million cost the budget.
        let puts = |n| {
            let mut b = b"\x80\x02](".to_vec();
            b.extend(std::iter::repeat_n(b'N', 3000));
            b.push(b'e');
            b.extend(std::iter::repeat_n(0x94, n));
            b.push(b'.');
            b
        };
        assert!(matches!(parse(&puts(3000), &mut Budget::new(4 << 20)), Ok(Value::List(l)) if l.len() == 3000));
        assert!(parse(&puts(1_000_000), &mut Budget::new(64 << 20)).unwrap_err().contains("more values than the 64 MiB"));
        // GETs copy: that list read 3000 times.
        let mut gets = b"\x80\x02](".to_vec();
        gets.extend(std::iter::repeat_n(b'N', 3000));
        gets.extend(b"eq\x00(");
        gets.extend(std::iter::repeat_n(*b"h\x00", 3000).flatten());
        gets.extend(b"l.");
        assert!(parse(&gets, &mut Budget::new(64 << 20)).unwrap_err().contains("more values than the 64 MiB"));
        // Stack growth is charged: a million Nones.
        let mut nones = b"\x80\x02".to_vec();
        nones.extend(std::iter::repeat_n(b'N', 1_000_000));
        nones.push(b'.');
        assert!(parse(&nones, &mut Budget::new(64 << 20)).unwrap_err().contains("more values"));
    }

    /// A dictionary memoized empty, filled, then read again (`{"a": d, "b": d}`, as
    /// pickle writes a value that is there twice): the second copy is the filled one.
    #[test]
    fn a_memo_entry_is_read_as_its_value_is_then() {
        // {"a": d, "b": d} with d = {"w": 1}: } q0 ( "a" } q1 "w" K1 s "b" h1 u .
        let v = parse_(b"\x80\x02}q\x00(X\x01\x00\x00\x00a}q\x01X\x01\x00\x00\x00wK\x01sX\x01\x00\x00\x00bh\x01u.").unwrap();
        let Value::Dict(d) = v else { panic!("{v:?}") };
        assert_eq!(d.get("a"), d.get("b"));
        let Some(Value::Dict(b)) = d.get("b") else { panic!("{d:?}") };
        assert_eq!(b.get("w"), Some(&Value::Int(1)));
        // A list read while still on the stack, then changed: the copy would not show the
        // change, so the pickle is refused. ] q0 h0 a . : the list appended to itself.
        assert!(parse_(b"\x80\x02]q\x00h\x00a.").unwrap_err().contains("changes after the pickle has shared it"));
        // A copy changed: in Python the change would show in the entry too.
        assert!(parse_(b"\x80\x02]q\x00\x85h\x00K\x01a0.").unwrap_err().contains("changes after the pickle has shared it"));
    }

    #[test]
    fn a_dict_keeps_the_first_place_and_last_value_of_a_key() {
        // {"a": 1, "b": 2, "a": 3} as SETITEMS
        let v = parse_(b"\x80\x02}(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00bK\x02X\x01\x00\x00\x00aK\x03u.").unwrap();
        let Value::Dict(d) = v else { panic!("{v:?}") };
        assert_eq!(d.items, vec![(Value::Str("a".into()), Value::Int(3)), (Value::Str("b".into()), Value::Int(2))]);
    }
}
