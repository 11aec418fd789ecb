package masking

import (
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"time"
)

// binaryText returns the text form of a binary-format value of a type
// whose text the proxy can rebuild exactly: int2, int4, int8, oid, date
// (ISO) and uuid. mask and hash then work on that text, and the field,
// retyped as text in the RowDescription, carries it (the binary form of
// text is its bytes). Other types give false and their masked or hashed
// values become NULL.
func binaryText(dst []byte, typeOID uint32, v []byte) ([]byte, bool) {
	switch {
	case typeOID == 21 && len(v) == 2: // int2
		return strconv.AppendInt(dst, int64(int16(binary.BigEndian.Uint16(v))), 10), true
	case typeOID == 23 && len(v) == 4: // int4
		return strconv.AppendInt(dst, int64(int32(binary.BigEndian.Uint32(v))), 10), true
	case typeOID == 26 && len(v) == 4: // oid
		return strconv.AppendUint(dst, uint64(binary.BigEndian.Uint32(v)), 10), true
	case typeOID == 20 && len(v) == 8: // int8
		return strconv.AppendInt(dst, int64(binary.BigEndian.Uint64(v)), 10), true
	case typeOID == 1082 && len(v) == 4: // date: days since 2000-01-01
		days := int32(binary.BigEndian.Uint32(v))
		t := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, int(days))
		if days == 1<<31-1 || days == -1<<31 || t.Year() < 1 || t.Year() > 9999 {
			return dst, false
		}
		return t.AppendFormat(dst, "2006-01-02"), true
	case typeOID == 2950 && len(v) == 16: // uuid
		var b [36]byte
		hex.Encode(b[0:8], v[0:4])
		b[8] = '-'
		hex.Encode(b[9:13], v[4:6])
		b[13] = '-'
		hex.Encode(b[14:18], v[6:8])
		b[18] = '-'
		hex.Encode(b[19:23], v[8:10])
		b[23] = '-'
		hex.Encode(b[24:], v[10:16])
		return append(dst, b[:]...), true
	}
	return dst, false
}
