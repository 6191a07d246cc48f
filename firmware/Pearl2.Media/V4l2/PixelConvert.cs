using Pearl2.Media.Encoders;

namespace Pearl2.Media.V4l2;

/// <summary>
/// Captured pictures into the encoder's planar 4:2:0 (I420). Packed 4:2:2 (YUYV, UYVY) keeps the chroma of even
/// rows; NV12 splits its interleaved chroma; YU12 is copied. Source and destination have the same size.
/// </summary>
public static unsafe class PixelConvert
{
    public static bool Supports(uint fourcc) =>
        fourcc == V4l2Abi.PixYuyv || fourcc == V4l2Abi.PixUyvy || fourcc == V4l2Abi.PixNv12 || fourcc == V4l2Abi.PixYuv420;

    /// <summary>Bytes a contiguous picture of this format takes with this stride (the luma stride for planar ones).</summary>
    public static int FrameBytes(uint fourcc, int stride, int height) =>
        fourcc == V4l2Abi.PixYuyv || fourcc == V4l2Abi.PixUyvy ? stride * height : stride * height * 3 / 2;

    public static void ToI420(uint fourcc, ReadOnlySpan<byte> src, int stride, int width, int height, in PicturePlanes dst)
    {
        if (src.Length < FrameBytes(fourcc, stride, height)) throw new ArgumentException($"{src.Length} bytes is less than a {width}x{height} picture");
        if (fourcc == V4l2Abi.PixYuyv) Packed422(src, stride, width, height, dst, y0: 0, u: 1, v: 3);
        else if (fourcc == V4l2Abi.PixUyvy) Packed422(src, stride, width, height, dst, y0: 1, u: 0, v: 2);
        else if (fourcc == V4l2Abi.PixNv12) Nv12(src, stride, width, height, dst);
        else if (fourcc == V4l2Abi.PixYuv420) Yu12(src, stride, width, height, dst);
        else throw new ArgumentException($"pixel format {FourCcText(fourcc)} is not converted");
    }

    public static string FourCcText(uint f) => new([(char)(f & 0xff), (char)((f >> 8) & 0xff), (char)((f >> 16) & 0xff), (char)(f >> 24)]);

    static void Packed422(ReadOnlySpan<byte> src, int stride, int width, int height, in PicturePlanes dst, int y0, int u, int v)
    {
        for (int row = 0; row < height; row++)
        {
            var line = src.Slice(row * stride, width * 2);
            byte* y = dst.Y + row * dst.YStride;
            for (int x = 0; x < width; x++) y[x] = line[2 * x + y0];
            if ((row & 1) != 0) continue;
            byte* pu = dst.U + row / 2 * dst.CStride, pv = dst.V + row / 2 * dst.CStride;
            for (int x = 0; x < width / 2; x++)
            {
                pu[x] = line[4 * x + u];
                pv[x] = line[4 * x + v];
            }
        }
    }

    static void Nv12(ReadOnlySpan<byte> src, int stride, int width, int height, in PicturePlanes dst)
    {
        for (int row = 0; row < height; row++) src.Slice(row * stride, width).CopyTo(new Span<byte>(dst.Y + row * dst.YStride, width));
        var uv = src[(stride * height)..];
        for (int row = 0; row < height / 2; row++)
        {
            var line = uv.Slice(row * stride, width);
            byte* pu = dst.U + row * dst.CStride, pv = dst.V + row * dst.CStride;
            for (int x = 0; x < width / 2; x++)
            {
                pu[x] = line[2 * x];
                pv[x] = line[2 * x + 1];
            }
        }
    }

    static void Yu12(ReadOnlySpan<byte> src, int stride, int width, int height, in PicturePlanes dst)
    {
        for (int row = 0; row < height; row++) src.Slice(row * stride, width).CopyTo(new Span<byte>(dst.Y + row * dst.YStride, width));
        int cs = stride / 2, ch = height / 2;
        var u = src.Slice(stride * height, cs * ch);
        var v = src.Slice(stride * height + cs * ch, cs * ch);
        for (int row = 0; row < ch; row++)
        {
            u.Slice(row * cs, width / 2).CopyTo(new Span<byte>(dst.U + row * dst.CStride, width / 2));
            v.Slice(row * cs, width / 2).CopyTo(new Span<byte>(dst.V + row * dst.CStride, width / 2));
        }
    }
}
