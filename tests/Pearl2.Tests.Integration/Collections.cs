using Xunit;

namespace Pearl2.Tests.Integration;

/// <summary>
/// The test classes run three at a time (xunit.runner.json): most of them wait on peers, timers and the network far
/// more than they compute. The classes in this collection measure how pearl2d holds up under a load they make
/// themselves (hundreds of viewers, floods, a throttled link, running out of descriptors); they run one after another
/// once the others are done, with the machine to themselves.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class Quiet
{
    public const string Name = "quiet: alone on the machine";
}
