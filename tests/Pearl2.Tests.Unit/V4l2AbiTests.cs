using System.Runtime.CompilerServices;
using Pearl2.Media.V4l2;
using Pearl2.Services.FrontPanel;
using Xunit;

namespace Pearl2.Tests.Unit;

/// <summary>
/// The V4L2 structures and ioctl numbers (and the GPIO chip info) against linux-libc-dev: run on this host (x86_64), and checked at compile
/// time for arm64 with clang against Debian's arm64 cross headers (the board's ABI, without running arm64 code).
/// </summary>
public class V4l2AbiTests
{
    static (string C, long Ours)[] Facts()
    {
        return
        [
            ("sizeof(struct v4l2_capability)", Unsafe.SizeOf<V4l2Abi.Capability>()),
            ("offsetof(struct v4l2_capability, capabilities)", 84),
            ("offsetof(struct v4l2_capability, device_caps)", 88),
            ("sizeof(struct v4l2_fmtdesc)", Unsafe.SizeOf<V4l2Abi.FmtDesc>()),
            ("offsetof(struct v4l2_fmtdesc, pixelformat)", 44),
            ("sizeof(struct v4l2_pix_format)", Unsafe.SizeOf<V4l2Abi.PixFormat>()),
            ("sizeof(struct v4l2_plane_pix_format)", Unsafe.SizeOf<V4l2Abi.PlanePixFormat>()),
            ("sizeof(struct v4l2_pix_format_mplane)", Unsafe.SizeOf<V4l2Abi.PixFormatMplane>()),
            ("offsetof(struct v4l2_pix_format_mplane, plane_fmt)", 20),
            ("offsetof(struct v4l2_pix_format_mplane, num_planes)", 180),
            ("sizeof(struct v4l2_format)", Unsafe.SizeOf<V4l2Abi.Format>()),
            ("offsetof(struct v4l2_format, fmt)", 8),
            ("sizeof(struct v4l2_requestbuffers)", Unsafe.SizeOf<V4l2Abi.RequestBuffers>()),
            ("sizeof(struct v4l2_plane)", Unsafe.SizeOf<V4l2Abi.Plane>()),
            ("offsetof(struct v4l2_plane, m)", 8),
            ("offsetof(struct v4l2_plane, data_offset)", 16),
            ("sizeof(struct v4l2_buffer)", Unsafe.SizeOf<V4l2Abi.Buffer>()),
            ("offsetof(struct v4l2_buffer, timestamp)", 24),
            ("offsetof(struct v4l2_buffer, sequence)", 56),
            ("offsetof(struct v4l2_buffer, memory)", 60),
            ("offsetof(struct v4l2_buffer, m)", 64),
            ("offsetof(struct v4l2_buffer, length)", 72),
            ("offsetof(struct v4l2_buffer, request_fd)", 80),
            ("sizeof(struct v4l2_exportbuffer)", Unsafe.SizeOf<V4l2Abi.ExportBuffer>()),
            ("offsetof(struct v4l2_exportbuffer, fd)", 16),
            ("sizeof(struct v4l2_control)", Unsafe.SizeOf<V4l2Abi.Control>()),
            ("sizeof(struct v4l2_dv_timings)", Unsafe.SizeOf<V4l2Abi.DvTimings>()),
            ("offsetof(struct v4l2_dv_timings, bt) + offsetof(struct v4l2_bt_timings, pixelclock)", 20),
            ("offsetof(struct v4l2_dv_timings, bt) + offsetof(struct v4l2_bt_timings, vbackporch)", 48),
            ("sizeof(struct v4l2_event_subscription)", Unsafe.SizeOf<V4l2Abi.EventSubscription>()),
            ("sizeof(struct v4l2_event)", Unsafe.SizeOf<V4l2Abi.Event>()),
            ("offsetof(struct v4l2_event, u)", 8),
            ("offsetof(struct v4l2_event, pending)", 72),
            ("offsetof(struct v4l2_event, sequence)", 76),
            ("offsetof(struct v4l2_event, id)", 96),
            ("sizeof(struct v4l2_ext_control)", Unsafe.SizeOf<V4l2Abi.ExtControl>()),
            ("offsetof(struct v4l2_ext_control, value)", 12),
            ("offsetof(struct v4l2_ext_control, value64)", 12),
            ("sizeof(struct v4l2_ext_controls)", Unsafe.SizeOf<V4l2Abi.ExtControls>()),
            ("offsetof(struct v4l2_ext_controls, count)", 4),
            ("offsetof(struct v4l2_ext_controls, request_fd)", 12),
            ("offsetof(struct v4l2_ext_controls, controls)", 24),
            ("sizeof(struct v4l2_encoder_cmd)", Unsafe.SizeOf<V4l2Abi.EncoderCommand>()),
            ("sizeof(struct v4l2_streamparm)", Unsafe.SizeOf<V4l2Abi.StreamParm>()),
            ("offsetof(struct v4l2_streamparm, parm.output.outputmode)", 8),
            ("offsetof(struct v4l2_streamparm, parm.output.timeperframe.numerator)", 12),
            ("offsetof(struct v4l2_streamparm, parm.output.timeperframe.denominator)", 16),
            ("VIDIOC_QUERYCAP", V4l2Abi.QueryCap),
            ("VIDIOC_ENUM_FMT", V4l2Abi.EnumFmt),
            ("VIDIOC_G_FMT", V4l2Abi.GetFmt),
            ("VIDIOC_S_FMT", V4l2Abi.SetFmt),
            ("VIDIOC_REQBUFS", V4l2Abi.ReqBufs),
            ("VIDIOC_QUERYBUF", V4l2Abi.QueryBuf),
            ("VIDIOC_QBUF", V4l2Abi.QBuf),
            ("VIDIOC_EXPBUF", V4l2Abi.ExpBuf),
            ("VIDIOC_DQBUF", V4l2Abi.DqBuf),
            ("VIDIOC_STREAMON", V4l2Abi.StreamOn),
            ("VIDIOC_STREAMOFF", V4l2Abi.StreamOff),
            ("VIDIOC_S_PARM", V4l2Abi.SetParm),
            ("VIDIOC_S_EXT_CTRLS", V4l2Abi.SetExtCtrls),
            ("VIDIOC_ENCODER_CMD", V4l2Abi.EncoderCmd),
            ("VIDIOC_S_CTRL", V4l2Abi.SetCtrl),
            ("VIDIOC_S_DV_TIMINGS", V4l2Abi.SetDvTimings),
            ("VIDIOC_G_DV_TIMINGS", V4l2Abi.GetDvTimings),
            ("VIDIOC_DQEVENT", V4l2Abi.DqEvent),
            ("VIDIOC_SUBSCRIBE_EVENT", V4l2Abi.SubscribeEvent),
            ("VIDIOC_QUERY_DV_TIMINGS", V4l2Abi.QueryDvTimings),
            ("V4L2_PIX_FMT_YUYV", V4l2Abi.PixYuyv),
            ("V4L2_PIX_FMT_UYVY", V4l2Abi.PixUyvy),
            ("V4L2_PIX_FMT_NV12", V4l2Abi.PixNv12),
            ("V4L2_PIX_FMT_YUV420", V4l2Abi.PixYuv420),
            ("V4L2_PIX_FMT_H264", V4l2Abi.PixH264),
            ("V4L2_CAP_VIDEO_CAPTURE_MPLANE", V4l2Abi.CapVideoCaptureMplane),
            ("V4L2_CAP_VIDEO_M2M_MPLANE", V4l2Abi.CapVideoM2mMplane),
            ("V4L2_CAP_VIDEO_M2M", V4l2Abi.CapVideoM2m),
            ("V4L2_CAP_STREAMING", V4l2Abi.CapStreaming),
            ("V4L2_CAP_DEVICE_CAPS", V4l2Abi.CapDeviceCaps),
            ("V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE", V4l2Abi.BufTypeVideoCaptureMplane),
            ("V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE", V4l2Abi.BufTypeVideoOutputMplane),
            ("V4L2_MEMORY_DMABUF", V4l2Abi.MemoryDmabuf),
            ("V4L2_EVENT_SOURCE_CHANGE", V4l2Abi.EventSourceChange),
            ("V4L2_EVENT_SRC_CH_RESOLUTION", V4l2Abi.SourceChangeResolution),
            ("V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME", V4l2Abi.CidMpegVideoForceKeyFrame),
            ("V4L2_CTRL_CLASS_CODEC", V4l2Abi.CtrlClassCodec),
            ("V4L2_CID_MPEG_VIDEO_B_FRAMES", V4l2Abi.CidMpegVideoBFrames),
            ("V4L2_CID_MPEG_VIDEO_GOP_SIZE", V4l2Abi.CidMpegVideoGopSize),
            ("V4L2_CID_MPEG_VIDEO_BITRATE_MODE", V4l2Abi.CidMpegVideoBitrateMode),
            ("V4L2_CID_MPEG_VIDEO_BITRATE", V4l2Abi.CidMpegVideoBitrate),
            ("V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER", V4l2Abi.CidMpegVideoRepeatSeqHeader),
            ("V4L2_CID_MPEG_VIDEO_H264_I_PERIOD", V4l2Abi.CidMpegVideoH264IPeriod),
            ("V4L2_CID_MPEG_VIDEO_H264_PROFILE", V4l2Abi.CidMpegVideoH264Profile),
            ("V4L2_CID_MPEG_VIDEO_PREPEND_SPSPPS_TO_IDR", V4l2Abi.CidMpegVideoPrependSpsPpsToIdr),
            ("V4L2_MPEG_VIDEO_BITRATE_MODE_CBR", V4l2Abi.BitrateModeCbr),
            ("V4L2_MPEG_VIDEO_H264_PROFILE_HIGH", V4l2Abi.H264ProfileHigh),
            ("V4L2_ENC_CMD_STOP", V4l2Abi.EncCmdStop),
            ("V4L2_BUF_FLAG_KEYFRAME", V4l2Abi.BufFlagKeyFrame),
            ("V4L2_BUF_FLAG_LAST", V4l2Abi.BufFlagLast),
            // and the GPIO chip info the panel finds its chip by (linux/gpio.h)
            ("sizeof(struct gpiochip_info)", Unsafe.SizeOf<GpioChips.ChipInfo>()),
            ("offsetof(struct gpiochip_info, label)", 32),
            ("offsetof(struct gpiochip_info, lines)", 64),
            ("GPIO_GET_CHIPINFO_IOCTL", GpioChips.GetChipInfo),
        ];
    }

    [Fact]
    public void MatchesTheHostKernelHeaders()
    {
        var facts = Facts();
        var dir = Directory.CreateTempSubdirectory("pearl2-v4l2").FullName;
        File.WriteAllText(Path.Combine(dir, "v.c"), "#include <stdio.h>\n#include <stddef.h>\n#include <linux/videodev2.h>\n#include <linux/gpio.h>\nint main(void) {\n" +
            string.Concat(facts.Select(f => $"  printf(\"%lld\\n\", (long long)({f.C}));\n")) + "  return 0; }\n");
        NativeProgram.Run("gcc", $"-o {dir}/v {dir}/v.c", dir);
        var values = NativeProgram.Run($"{dir}/v", "", dir).Split('\n').Select(long.Parse).ToArray();
        for (int i = 0; i < facts.Length; i++) Assert.True(values[i] == facts[i].Ours, $"{facts[i].C}: the kernel says {values[i]}, V4l2Abi says {facts[i].Ours}");
    }

    [Fact]
    public void MatchesTheArm64KernelHeaders_AtCompileTime()
    {
        var facts = Facts();
        var dir = Directory.CreateTempSubdirectory("pearl2-v4l2-arm64").FullName;
        File.WriteAllText(Path.Combine(dir, "v.c"), "#include <stddef.h>\n#include <linux/videodev2.h>\n#include <linux/gpio.h>\n" +
            string.Concat(facts.Select(f => $"_Static_assert((long long)({f.C}) == {f.Ours}LL, \"{f.C.Replace("\"", "")}\");\n")));
        NativeProgram.Run("clang", $"--target=aarch64-linux-gnu -I/usr/aarch64-linux-gnu/include -fsyntax-only {dir}/v.c", dir);
    }
}
