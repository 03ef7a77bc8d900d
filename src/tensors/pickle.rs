//! A restricted reader of Python pickles (protocols 2 to 5, the binary opcodes `torch.save`
//! writes): it builds a tree of plain values and never runs anything. A GLOBAL is kept as
//! its name; a call (REDUCE, NEWOBJ) as an [`Value::Object`] holding the callee's name and
//! its arguments, for the caller to interpret (a tensor is the call
//! `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`). The one call
//! acted on is `collections.OrderedDict()`, which becomes a dictionary, so that the items
//! SETITEMS adds to it land in order.
//!
//! Input is untrusted: every length is checked against the bytes left, and every value the
//! parser builds (pushed on the stack, copied into or out of the memo, a key indexed in a
//! dictionary) is charged against one [`Budget`] of memory before it is built, so a few
//! bytes of pickle can never make gigabytes of values. Nesting is bounded too (a deep tree
//! would overflow the stack when it is dropped). A malformed pickle is an error, never a
//! panic.
use std::collections::HashMap;

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
    /// is what BUILD gave it (an object's `__dict__`: a module's `_parameters`, `_modules`...).
    Object { callee: String, args: Vec<Value>, state: Option<Box<Value>> },
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

/// An entry of the stack: a value (with its nesting depth and node count) or a MARK.
enum Slot {
    Mark,
    V(Value, Size),
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
    let mut parser = Parser { bytes, pos: 0, stack: Vec::new(), memo: HashMap::new(), budget };
    let v = parser.run()?;
    Ok((v, parser.pos))
}

struct Parser<'a, 'b> {
    bytes: &'a [u8],
    pos: usize,
    stack: Vec<Slot>,
    memo: HashMap<u32, (Value, Size)>,
    budget: &'b mut Budget,
}

impl<'a> Parser<'a, '_> {
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

    fn string(&mut self, n: u64) -> Result<Value, String> {
        let n = self.len(n)?;
        let at = self.pos;
        let s = self.take(n)?;
        Ok(Value::Str(std::str::from_utf8(s).map_err(|_| format!("a string at byte {at} is not UTF-8"))?.to_string()))
    }

    fn line(&mut self) -> Result<String, String> {
        let rest = &self.bytes[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or("a GLOBAL name without its end of line")?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| "a GLOBAL name that is not UTF-8")?.to_string();
        self.pos += n + 1;
        Ok(s)
    }

    /// Charges `n` bytes, naming the place in the pickle when the budget runs out.
    fn charge(&mut self, n: u64) -> Result<(), String> {
        let at = self.pos;
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
        self.stack.push(Slot::V(v, size));
        Ok(())
    }

    /// Pushes a value built from children of size `inner` (their sizes combined).
    fn push_holding(&mut self, v: Value, inner: Size) -> Result<(), String> {
        self.charge(NODE)?;
        let size = Size::leaf(0).holding(inner);
        if size.depth > MAX_DEPTH {
            return Err(format!("values nest deeper than {MAX_DEPTH} levels (byte {})", self.pos));
        }
        self.stack.push(Slot::V(v, size));
        Ok(())
    }

    fn pop_sized(&mut self) -> Result<(Value, Size), String> {
        match self.stack.pop() {
            Some(Slot::V(v, s)) => Ok((v, s)),
            Some(Slot::Mark) => Err(format!("a MARK where a value was expected (byte {})", self.pos)),
            None => Err(format!("the stack is empty where a value was expected (byte {})", self.pos)),
        }
    }

    fn pop(&mut self) -> Result<Value, String> {
        Ok(self.pop_sized()?.0)
    }

    /// The top value, and its size grown by `child` (a value about to be put inside it).
    fn top_holding(&mut self, child: Size) -> Result<&mut Value, String> {
        let pos = self.pos;
        match self.stack.last_mut() {
            Some(Slot::V(v, s)) => {
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
        let at = self.stack.iter().rposition(|s| matches!(s, Slot::Mark)).ok_or_else(|| format!("no MARK on the stack (byte {})", self.pos))?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        let mut inner = Size { depth: 0, bytes: 0 };
        let values = items
            .into_iter()
            .map(|s| match s {
                Slot::V(v, size) => {
                    inner = inner.holding(size);
                    v
                }
                Slot::Mark => unreachable!("only the topmost MARK is above"),
            })
            .collect();
        Ok((values, Size { depth: inner.depth.saturating_sub(1), bytes: inner.bytes }))
    }

    /// MEMOIZE/PUT: a copy of the top value, charged before it is made.
    fn memo_put(&mut self, key: u32) -> Result<(), String> {
        let size = match self.stack.last() {
            Some(Slot::V(_, s)) => *s,
            _ => return Err(format!("no value on the stack to memoize at byte {}", self.pos)),
        };
        self.charge(size.bytes)?;
        let Some(Slot::V(v, _)) = self.stack.last() else { unreachable!("checked above") };
        let entry = (v.clone(), size);
        self.memo.insert(key, entry);
        Ok(())
    }

    /// GET: a copy of a memo entry, charged before it is made.
    fn memo_get(&mut self, key: u32) -> Result<(), String> {
        let size = self.memo.get(&key).map(|e| e.1).ok_or_else(|| format!("memo entry {key} is used before it is set"))?;
        self.charge(size.bytes)?;
        let v = self.memo[&key].0.clone();
        self.stack.push(Slot::V(v, size));
        Ok(())
    }

    fn call(&mut self, callee: Value, args: Vec<Value>, inner: Size) -> Result<(), String> {
        let callee = match callee {
            Value::Global(g) => g,
            // The legacy format pickles a module's class as the persistent id
            // ("module", class, source file, source).
            Value::Persistent(id) => match *id {
                Value::Tuple(t) if matches!(t.first(), Some(Value::Str(s)) if s == "module") => match t.into_iter().nth(1) {
                    Some(Value::Global(g)) => g,
                    _ => return Err(format!("a module persistent id without its class (byte {})", self.pos)),
                },
                _ => return Err(format!("a call of a persistent id that is no module class (byte {})", self.pos)),
            },
            _ => return Err(format!("a call of something that is no global (byte {})", self.pos)),
        };
        if callee == "collections.OrderedDict" && args.is_empty() {
            self.push(Value::Dict(Dict::default()))
        } else {
            self.push_holding(Value::Object { callee, args, state: None }, inner)
        }
    }

    fn set_items(&mut self, items: Vec<Value>, inner: Size) -> Result<(), String> {
        if !items.len().is_multiple_of(2) {
            return Err("SETITEMS with an odd number of values".into());
        }
        // The dictionary's index holds a copy of each string key.
        let keys: u64 = items.iter().step_by(2).map(|k| if let Value::Str(s) = k { NODE + s.len() as u64 } else { 0 }).sum();
        self.charge(keys)?;
        let Value::Dict(d) = self.top_holding(inner)? else { return Err("SETITEM(S) on a value that is not a dictionary".into()) };
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            d.insert(k, v);
        }
        Ok(())
    }

    fn run(&mut self) -> Result<Value, String> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO n
                }
                0x95 => {
                    self.u64()?; // FRAME length: the frame's bytes follow inline
                }
                b'.' => return self.pop(),
                b'(' => {
                    self.charge(NODE)?;
                    self.stack.push(Slot::Mark)
                }
                b'}' => self.push(Value::Dict(Dict::default()))?,
                b']' => self.push(Value::List(Vec::new()))?,
                b')' => self.push(Value::Tuple(Vec::new()))?,
                0x8f => self.push(Value::List(Vec::new()))?, // EMPTY_SET, kept as a list
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let v = i32::from_le_bytes(self.take(4)?.try_into().unwrap());
                    self.push(Value::Int(v as i64))?
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64))?
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.take(2)?.try_into().unwrap());
                    self.push(Value::Int(v as i64))?
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a { self.u8()? as u64 } else { self.u32()? as u64 };
                    let n = self.len(n)?;
                    let b = self.take(n)?;
                    let v = if n == 0 {
                        Value::Int(0)
                    } else if n <= 8 {
                        let fill = if b[n - 1] & 0x80 != 0 { 0xff } else { 0 };
                        let mut w = [fill; 8];
                        w[..n].copy_from_slice(b);
                        Value::Int(i64::from_le_bytes(w))
                    } else {
                        Value::BigInt
                    };
                    self.push(v)?
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().unwrap());
                    self.push(Value::Float(v))?
                }
                b'X' => {
                    let n = self.u32()? as u64;
                    let v = self.string(n)?;
                    self.push(v)?
                }
                0x8c => {
                    let n = self.u8()? as u64;
                    let v = self.string(n)?;
                    self.push(v)?
                }
                0x8d => {
                    let n = self.u64()?;
                    let v = self.string(n)?;
                    self.push(v)?
                }
                b'B' | b'C' | 0x8e => {
                    let n = match op {
                        b'B' => self.u32()? as u64,
                        b'C' => self.u8()? as u64,
                        _ => self.u64()?,
                    };
                    let n = self.len(n)?;
                    let v = self.take(n)?.to_vec();
                    self.push(Value::Bytes(v))?
                }
                b'q' => {
                    let k = self.u8()? as u32;
                    self.memo_put(k)?
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memo_put(k)?
                }
                0x94 => {
                    let k = self.memo.len() as u32;
                    self.memo_put(k)?
                }
                b'h' => {
                    let k = self.u8()? as u32;
                    self.memo_get(k)?
                }
                b'j' => {
                    let k = self.u32()?;
                    self.memo_get(k)?
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Value::Global(format!("{module}.{name}")))?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.push(Value::Global(format!("{m}.{n}")))?,
                        _ => return Err(format!("STACK_GLOBAL without two strings (byte {at})")),
                    }
                }
                b't' => {
                    let (items, inner) = self.pop_mark()?;
                    self.push_holding(Value::Tuple(items), inner)?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
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
                b'l' => {
                    let (items, inner) = self.pop_mark()?;
                    self.push_holding(Value::List(items), inner)?
                }
                b'd' => {
                    let (items, inner) = self.pop_mark()?;
                    self.push(Value::Dict(Dict::default()))?;
                    self.set_items(items, inner)?
                }
                b'Q' => {
                    let (id, size) = self.pop_sized()?;
                    self.push_holding(Value::Persistent(Box::new(id)), size)?
                }
                b'R' | 0x81 | 0x92 => {
                    if op == 0x92 {
                        self.pop()?; // NEWOBJ_EX's keyword arguments: not kept
                    }
                    let (args, size) = self.pop_sized()?;
                    let callee = self.pop()?;
                    let Value::Tuple(args) = args else { return Err(format!("a call (REDUCE, NEWOBJ) without an argument tuple (byte {at})")) };
                    self.call(callee, args, Size { depth: size.depth.saturating_sub(1), bytes: size.bytes })?
                }
                b'b' => {
                    let (state, size) = self.pop_sized()?;
                    match self.top_holding(size)? {
                        Value::Object { state: s, .. } => *s = Some(Box::new(state)),
                        // An OrderedDict's own attributes (a state_dict's `_metadata`): not kept.
                        Value::Dict(_) => {}
                        _ => return Err(format!("BUILD on a value that is no object (byte {at})")),
                    }
                }
                b's' => {
                    let (v, vs) = self.pop_sized()?;
                    let (k, ks) = self.pop_sized()?;
                    self.set_items(vec![k, v], vs.holding(ks))?
                }
                b'u' => {
                    let (items, inner) = self.pop_mark()?;
                    self.set_items(items, inner)?
                }
                b'a' | b'e' | 0x90 => {
                    let (items, inner) = if op == b'a' {
                        let (v, size) = self.pop_sized()?;
                        (vec![v], size)
                    } else {
                        self.pop_mark()?
                    };
                    match self.top_holding(inner)? {
                        Value::List(l) => l.extend(items),
                        _ => return Err(format!("APPEND(S) on a value that is no list (byte {at})")),
                    }
                }
                0x91 => {
                    let (items, inner) = self.pop_mark()?;
                    self.push_holding(Value::List(items), inner)?
                }
                b'0' => {
                    self.pop()?;
                }
                other => return Err(format!("unsupported pickle opcode 0x{other:02x} at byte {at}")),
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
        // Memo puts are charged as gets are: a list of 3000 Nones memoized 3000 times.
        let mut puts = b"\x80\x02](".to_vec();
        puts.extend(std::iter::repeat_n(b'N', 3000));
        puts.push(b'e');
        puts.extend(std::iter::repeat_n(0x94, 3000));
        puts.push(b'.');
        assert!(parse(&puts, &mut Budget::new(64 << 20)).unwrap_err().contains("more values than the 64 MiB"));
        // Stack growth is charged: a million Nones.
        let mut nones = b"\x80\x02".to_vec();
        nones.extend(std::iter::repeat_n(b'N', 1_000_000));
        nones.push(b'.');
        assert!(parse(&nones, &mut Budget::new(64 << 20)).unwrap_err().contains("more values"));
    }

    #[test]
    fn a_dict_keeps_the_first_place_and_last_value_of_a_key() {
        // {"a": 1, "b": 2, "a": 3} as SETITEMS
        let v = parse_(b"\x80\x02}(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00bK\x02X\x01\x00\x00\x00aK\x03u.").unwrap();
        let Value::Dict(d) = v else { panic!("{v:?}") };
        assert_eq!(d.items, vec![(Value::Str("a".into()), Value::Int(3)), (Value::Str("b".into()), Value::Int(2))]);
    }
}
