using System.Buffers.Binary;

namespace Pearl2.Formats.Ext4;

/// <summary>
/// The few fields of an ext2/3/4 superblock (1024 bytes at offset 1024 of the file system) that tell how big the file
/// system is: what an A/B update copies of a slot, no more (the rest of the partition may hold anything).
/// </summary>
public static class Ext4Superblock
{
    /// <summary>Where the superblock starts, and how long it is.</summary>
    public const int Offset = 1024, Size = 1024;
    const ushort Magic = 0xEF53;
    const uint Incompat64Bit = 0x80;

    /// <summary>The file system's size in bytes, or null when <paramref name="superblock"/> is not an ext superblock or is out of range.</summary>
    public static long? FileSystemBytes(ReadOnlySpan<byte> superblock)
    {
        if (superblock.Length < Size || BinaryPrimitives.ReadUInt16LittleEndian(superblock[0x38..]) != Magic) return null;  // s_magic
        long blocks = BinaryPrimitives.ReadUInt32LittleEndian(superblock[0x04..]);                                          // s_blocks_count_lo
        if ((BinaryPrimitives.ReadUInt32LittleEndian(superblock[0x60..]) & Incompat64Bit) != 0)                             // s_feature_incompat
            blocks |= (long)BinaryPrimitives.ReadUInt32LittleEndian(superblock[0x150..]) << 32;                              // s_blocks_count_hi
        uint logBlock = BinaryPrimitives.ReadUInt32LittleEndian(superblock[0x18..]);                                       // s_log_block_size
        return logBlock <= 6 && blocks > 0 ? blocks << (10 + (int)logBlock) : null;
    }
}
