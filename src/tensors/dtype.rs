//! The element types of tensor files: one vocabulary for safetensors (`F32`), PyTorch's
//! storage classes (`torch.FloatStorage`) and dtypes (`torch.float32`).

/// An element type, by its safetensors spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    Bool,
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F16,
    BF16,
    F32,
    F64,
    C64,
    C128,
}

/// Every dtype, for lookups by name.
const ALL: [DType; 15] = [
    DType::Bool,
    DType::U8,
    DType::I8,
    DType::I16,
    DType::U16,
    DType::I32,
    DType::U32,
    DType::I64,
    DType::U64,
    DType::F16,
    DType::BF16,
    DType::F32,
    DType::F64,
    DType::C64,
    DType::C128,
];

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::Bool | DType::U8 | DType::I8 => 1,
            DType::I16 | DType::U16 | DType::F16 | DType::BF16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::U64 | DType::F64 | DType::C64 => 8,
            DType::C128 => 16,
        }
    }

    /// The safetensors spelling (`F32`, `BF16`, `BOOL`...), which nnmnist's messages use.
    pub fn short(self) -> &'static str {
        match self {
            DType::Bool => "BOOL",
            DType::U8 => "U8",
            DType::I8 => "I8",
            DType::I16 => "I16",
            DType::U16 => "U16",
            DType::I32 => "I32",
            DType::U32 => "U32",
            DType::I64 => "I64",
            DType::U64 => "U64",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::F32 => "F32",
            DType::F64 => "F64",
            DType::C64 => "C64",
            DType::C128 => "C128",
        }
    }

    /// torch's name (`float32`), which `nnmnist diff` prints.
    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::U8 => "uint8",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::U16 => "uint16",
            DType::I32 => "int32",
            DType::U32 => "uint32",
            DType::I64 => "int64",
            DType::U64 => "uint64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::C64 => "complex64",
            DType::C128 => "complex128",
        }
    }

    /// From the safetensors spelling.
    pub fn from_short(s: &str) -> Option<DType> {
        ALL.into_iter().find(|d| d.short() == s)
    }

    /// From a storage class (`torch.FloatStorage`) or a dtype (`torch.float32`).
    pub fn from_torch(name: &str) -> Option<DType> {
        let name = name.strip_prefix("torch.")?;
        let storage = |d: DType| match d {
            DType::Bool => "BoolStorage",
            DType::U8 => "ByteStorage",
            DType::I8 => "CharStorage",
            DType::I16 => "ShortStorage",
            DType::U16 => "UInt16Storage",
            DType::I32 => "IntStorage",
            DType::U32 => "UInt32Storage",
            DType::I64 => "LongStorage",
            DType::U64 => "UInt64Storage",
            DType::F16 => "HalfStorage",
            DType::BF16 => "BFloat16Storage",
            DType::F32 => "FloatStorage",
            DType::F64 => "DoubleStorage",
            DType::C64 => "ComplexFloatStorage",
            DType::C128 => "ComplexDoubleStorage",
        };
        ALL.into_iter().find(|&d| d.name() == name || storage(d) == name)
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
    }

    /// Integers and bool: compared by value, exactly.
    pub fn is_integer(self) -> bool {
        matches!(self, DType::Bool | DType::U8 | DType::I8 | DType::I16 | DType::U16 | DType::I32 | DType::U32 | DType::I64 | DType::U64)
    }

    /// An integer or bool element (little-endian bytes) as its exact value (a bool as 0 or 1).
    pub fn int_at(self, b: &[u8]) -> i128 {
        match self {
            // Any byte but 0 is true, as torch reads a bool.
            DType::Bool => (b[0] != 0) as i128,
            DType::U8 => b[0] as i128,
            DType::I8 => b[0] as i8 as i128,
            DType::I16 => i16::from_le_bytes([b[0], b[1]]) as i128,
            DType::U16 => u16::from_le_bytes([b[0], b[1]]) as i128,
            DType::I32 => i32::from_le_bytes(b[..4].try_into().expect("4 bytes")) as i128,
            DType::U32 => u32::from_le_bytes(b[..4].try_into().expect("4 bytes")) as i128,
            DType::I64 => i64::from_le_bytes(b[..8].try_into().expect("8 bytes")) as i128,
            DType::U64 => u64::from_le_bytes(b[..8].try_into().expect("8 bytes")) as i128,
            _ => self.float_at(b) as i128,
        }
    }

    /// A real element (little-endian bytes) as f64: exact for every float dtype, and for
    /// integers up to 2^53. Complex elements have no single value: NaN.
    pub fn float_at(self, b: &[u8]) -> f64 {
        match self {
            DType::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f64(),
            DType::BF16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f64(),
            DType::F32 => f32::from_le_bytes(b[..4].try_into().expect("4 bytes")) as f64,
            DType::F64 => f64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
            DType::C64 | DType::C128 => f64::NAN,
            _ => self.int_at(b) as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_spelling_names_one_dtype() {
        for d in ALL {
            assert_eq!(DType::from_short(d.short()), Some(d));
            assert_eq!(DType::from_torch(&format!("torch.{}", d.name())), Some(d));
        }
        assert_eq!(DType::from_torch("torch.FloatStorage"), Some(DType::F32));
        assert_eq!(DType::from_torch("torch.LongStorage"), Some(DType::I64));
        assert_eq!(DType::from_torch("FloatStorage"), None);
    }

    #[test]
    fn elements_read_as_their_values() {
        assert_eq!(DType::F16.float_at(&half::f16::from_f32(0.5).to_le_bytes()), 0.5);
        assert_eq!(DType::BF16.float_at(&half::bf16::from_f32(-2.0).to_le_bytes()), -2.0);
        assert_eq!(DType::I64.int_at(&(-7i64).to_le_bytes()), -7);
        assert_eq!(DType::U64.int_at(&u64::MAX.to_le_bytes()), u64::MAX as i128);
        assert_eq!(DType::I64.int_at(&((1i64 << 53) + 1).to_le_bytes()), (1 << 53) + 1);
        assert_eq!((DType::Bool.int_at(&[2]), DType::Bool.int_at(&[0])), (1, 0));
    }
}
